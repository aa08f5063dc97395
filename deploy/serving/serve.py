"""Serve exported models over HTTP; the logic is in ernie3/serve.py.

    python deploy/serving/serve.py --config deploy/serving/config.yml [--host 127.0.0.1] [--port 8000] [--verbose]
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))  # the repository root

from ernie3.errors import run_cli  # noqa: E402
from ernie3.serve import main  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
