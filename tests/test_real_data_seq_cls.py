"""The official CLUE dev sets in ../shared/data load with the right number of examples (skipped without them)."""
import pytest
from conftest import shared_data

from ernie3.data import load_examples
from ernie3.tasks import get_task


@pytest.mark.parametrize(
    "task_name, relative_path, count",
    [
        ("afqmc", "afqmc/dev.json", 4316),
        ("tnews", "tnews/dev.json", 10000),
        ("iflytek", "iflytek/dev.json", 2599),
        ("ocnli", "ocnli/dev.json", 2950),  # 50 rows labelled "-" are dropped
        ("cluewsc2020", "cluewsc2020/dev.json", 304),
        ("csl", "csl/dev.json", 3000),
    ],
)
def test_official_dev_sets_load(task_name, relative_path, count):
    task = get_task(task_name)
    examples = load_examples(task, "dev", shared_data(relative_path))
    assert len(examples) == count
    assert {e["label"] for e in examples} <= set(range(task.num_labels))


def test_every_iflytek_and_tnews_label_of_the_official_label_files_is_known():
    import json

    for task_name in ("tnews", "iflytek"):
        with open(shared_data(task_name, "labels.json"), encoding="utf-8") as handle:
            official = [json.loads(line)["label"] for line in handle if line.strip()]
        assert official == list(get_task(task_name).labels)
