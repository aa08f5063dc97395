"""The only module that knows about upstream breakages in the pinned stack (requirements.txt).

Each fix names the upstream problem it covers. Nothing else in the project works around library bugs.
"""
from __future__ import annotations

import os
import sys
import warnings


def configure_environment() -> None:
    """Environment settings that must be in place before paddle is first imported."""
    if "paddle" not in sys.modules:
        # paddle 3.x exports PIR `model.json` by default; paddlenlp/paddleslim PTQ and
        # `enable_memory_optim()` need the legacy `model.pdmodel` program format.
        os.environ.setdefault("FLAGS_enable_pir_api", "0")
    # paddle's cpp_extension warns about ccache and setuptools about distutils at every import.
    warnings.filterwarnings("ignore", message="No ccache found")
    warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
