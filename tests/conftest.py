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


SAMPLES = os.path.join(REPO_ROOT, "ernie3", "samples")


def sample_file(task_name: str, split: str) -> str:
    """A shipped sample file (ernie3/samples), whatever its format's extension."""
    from ernie3.demo import sample_file as shipped_sample

    return shipped_sample(task_name, split)


@pytest.fixture(scope="session")
def trained_tnews(tiny_model_dir, tmp_path_factory) -> dict:
    """A tiny model trained until it classifies the TNEWS sample well (so agreement checks mean something),
    with its best checkpoint and static export."""
    from ernie3.train import run

    output_dir = tmp_path_factory.mktemp("tnews-trained")
    return run("seq_cls", [
        "--task_name", "tnews", "--model_name_or_path", tiny_model_dir, "--output_dir", str(output_dir),
        "--train_file", sample_file("tnews", "train"), "--dev_file", sample_file("tnews", "dev"),
        "--do_train", "--do_export", "--num_train_epochs", "20", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "16", "--save_total_limit", "1",
    ])  # fmt: skip
