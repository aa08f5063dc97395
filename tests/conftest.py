import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
SHARED_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))

# Test-only task types (tests/task_plugins), added to the registry as any project adds its own: through
# ERNIE3_TASK_MODULES, which subprocesses (servers, scripts) inherit. The shared tests below ask the registry.
TEST_TASK_MODULES = [os.path.join(REPO_ROOT, "tests", "task_plugins", "multi_label.py")]
os.environ["ERNIE3_TASK_MODULES"] = os.pathsep.join(
    dict.fromkeys(filter(None, [*os.environ.get("ERNIE3_TASK_MODULES", "").split(os.pathsep), *TEST_TASK_MODULES]))
)

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


def sample_file(task_name: str, split: str) -> str:
    """A shipped sample file (ernie3/samples), whatever its format's extension."""
    from ernie3.data import sample_file as shipped_sample

    path = shipped_sample(task_name, split)
    assert path, f"no {split} sample for {task_name}"
    return path


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


def sample_task_cases() -> list[tuple[str, str, list]]:
    """(task type, task, flags) of every task type that ships samples, asked from the registry: the shared tests
    parametrize over these, so a new task type (tests/task_plugins too) is covered without editing them. The
    flags are the type's `sample_flags` for a tiny model (QA's short windows cut the sample contexts in several)."""
    from ernie3.tasks import sample_tasks

    return [(task.task_type, task.name, list(task.sample_flags)) for task in sample_tasks()]


# one small exported model per task type: two training steps are enough for tests that compare two ways of running
# the same weights
TINY_EXPORT_TASKS = tuple(sample_task_cases())


def export_tiny_model(task_type: str, task_name: str, flags: list, model_dir: str, output_dir: str) -> str:
    """A static export of the tiny model after two training steps on the task's samples."""
    from ernie3.train import run

    summary = run(task_type, [
        "--task_name", task_name, "--model_name_or_path", model_dir, "--output_dir", str(output_dir),
        "--train_file", sample_file(task_name, "train"), "--dev_file", sample_file(task_name, "dev"),
        "--max_steps", "2", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
        "--evaluation_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--do_train", "--do_export", *flags,
    ])  # fmt: skip
    return summary["export_dir"]


@pytest.fixture(scope="session")
def tiny_exports(tiny_model_dir, tmp_path_factory) -> dict:
    """Task type → exported model directory, one per task type (shared: tests must not modify them)."""
    return {
        task_type: export_tiny_model(task_type, name, flags, tiny_model_dir, tmp_path_factory.mktemp(name))
        for task_type, name, flags in TINY_EXPORT_TASKS
    }
