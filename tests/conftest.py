import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
SHARED_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))
sys.path.insert(0, REPO_ROOT)

import ernie3  # noqa: E402,F401  (environment set-up before paddle is imported)


def fixture_path(*parts: str) -> str:
    return os.path.join(FIXTURES, *parts)


def shared_data(*parts: str) -> str:
    """A file under ../shared/data; the test is skipped with the reason when it is not there."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data not available: {path} (the shared data folder sits beside the repository)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A randomly initialised 2-layer ERNIE with the generated vocabulary, built once per test session."""
    from ernie3.modeling import build_tiny_model

    return build_tiny_model(str(tmp_path_factory.mktemp("tiny-ernie")))
