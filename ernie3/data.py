"""Local files and online datasets → validated examples. Every error names the file, line and field."""
from __future__ import annotations

from typing import Optional

from ernie3.errors import UserError
from ernie3.tasks import RecordError, Task

SPLIT_FLAGS = {"train": "--train_file", "dev": "--dev_file", "test": "--test_file"}


def load_local_examples(task: Task, split: str, path: str) -> list[dict]:
    """Examples of one split from a local file in the task's official format."""
    flag = SPLIT_FLAGS.get(split, split)
    examples = []
    for line_number, record in task.read_records(path, flag):
        if not isinstance(record, dict):
            raise UserError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
        try:
            example = task.parse_record(record, with_label=split != "test")
        except RecordError as exc:
            raise UserError(f"{path}:{line_number}: {exc}") from None
        if example is not None:
            examples.append(example)
    if not examples:
        raise UserError(f"{flag}: {path} holds no usable {task.name} examples")
    return examples


def load_online_examples(task: Task, split: str) -> list[dict]:
    """Examples of one split downloaded by paddlenlp's `load_dataset`; fails fast with the flag to use offline."""
    from paddlenlp.datasets import load_dataset

    try:
        dataset = load_dataset(*task.online_dataset, splits=[split])
    except Exception as exc:  # paddlenlp raises RuntimeError/OSError/requests errors when offline
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UserError(
            f"could not download the {task.name} {split} split through paddlenlp ({reason}); "
            f"without network, pass a local file in the official format with {SPLIT_FLAGS.get(split, split)}"
        ) from None
    label_list = getattr(dataset, "label_list", None)
    examples = []
    for position, record in enumerate(dataset):
        record = dict(record)
        # paddlenlp has already turned label strings into indices into its label list
        if label_list and isinstance(record.get("label"), int):
            record["label"] = label_list[record["label"]]
        try:
            example = task.parse_record(record, with_label=split != "test")
        except RecordError as exc:
            raise UserError(f"{'/'.join(filter(None, task.online_dataset))} {split} record {position}: {exc}") from None
        if example is not None:
            examples.append(example)
    return examples


def load_examples(task: Task, split: str, path: Optional[str]) -> list[dict]:
    """A split from the local file when given, else from paddlenlp's online copy of the task's dataset."""
    if path:
        return load_local_examples(task, split, path)
    return load_online_examples(task, split)
