"""Local files and online datasets → validated examples. Every error names the file, the record and the field."""
from __future__ import annotations

import glob
import os
from typing import Any, Iterable, Optional

from ernie3.errors import UserError
from ernie3.tasks import RecordError, Task
from ernie3.tasks.base import RecordLocation

#: small made-up data sets shipped with the package (see scripts/make_sample_data.py): the offline demo's input
SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")
SPLIT_FLAGS = {"train": "--train_file", "dev": "--dev_file", "test": "--test_file"}
#: how many skipped records --skip_invalid_records reports one by one
SHOWN_SKIPPED = 10


def record_location(source: str, location: RecordLocation) -> str:
    """`file:line` for line-based formats, `file: description` otherwise (e.g. a SQuAD question's id)."""
    return f"{source}:{location}" if isinstance(location, int) else f"{source}: {location}"


def parse_records(
    task: Task, split: str, source: str, records: Iterable[tuple[RecordLocation, Any]], skip_invalid: bool
) -> list[dict]:
    """Validated examples; the first invalid record stops with its location, unless `skip_invalid` drops it."""
    from ernie3.logs import library_logger

    logger = library_logger()  # (infer on an OpenVINO/ORT model runs without paddlenlp)
    examples, skipped, dropped = [], 0, 0
    for location, record in records:
        try:
            if not isinstance(record, dict):
                raise RecordError(f"expected a JSON object, got {type(record).__name__}")
            example = task.parse_record(record, with_label=split != "test")
        except RecordError as exc:
            message = f"{record_location(source, location)}: {exc}"
            if not skip_invalid:
                raise UserError(message) from None
            skipped += 1
            if skipped <= SHOWN_SKIPPED:
                logger.warning(f"skipped invalid record: {message}")
            continue
        if example is None:
            dropped += 1  # a record the task leaves out by its own rules (e.g. NLI rows without a gold label)
        else:
            examples.append(example)
    if dropped:
        logger.info(f"{source}: left out {dropped} {task.name} records without a gold label (as CLUE does)")
    if skipped:
        logger.warning(f"{source}: skipped {skipped} invalid {task.name} records (--skip_invalid_records)")
    return examples


def load_local_examples(task: Task, split: str, path: str, skip_invalid: bool = False) -> list[dict]:
    """Examples of one split from a local file in the task's official format."""
    flag = SPLIT_FLAGS.get(split, split)
    examples = parse_records(task, split, path, task.read_records(path, flag), skip_invalid)
    if not examples:
        raise UserError(f"{flag}: {path} holds no usable {task.name} examples")
    return examples


def load_online_examples(task: Task, split: str, skip_invalid: bool = False) -> list[dict]:
    """Examples of one split downloaded by paddlenlp's `load_dataset`; fails fast with the flag to use offline."""
    from paddlenlp.datasets import load_dataset

    from ernie3.modeling import short_reason

    flag = SPLIT_FLAGS.get(split, split)
    if task.online_dataset is None:
        raise UserError(f"task {task.name} has no online dataset: pass local files with --train_file/--dev_file "
                        f"(the {split} split: {flag})")  # fmt: skip
    online_split = task.online_split(split)
    if online_split is None:
        raise UserError(f"paddlenlp's {task.online_dataset[0]} has no {split} split; pass a local file with {flag}")
    try:
        dataset = load_dataset(*task.online_dataset, splits=[online_split])
    except Exception as exc:  # paddlenlp raises RuntimeError/OSError/requests errors when offline
        reason = short_reason(exc)
        raise UserError(
            f"could not download the {task.name} {split} split through paddlenlp ({reason}); "
            f"without network, pass a local file in the official format with {flag}"
        ) from None
    label_list = getattr(dataset, "label_list", None)

    def records() -> Iterable[tuple[RecordLocation, Any]]:
        for position, record in enumerate(dataset):
            yield f"record {position}", with_label_names(dict(record), label_list)

    source = f"{'/'.join(filter(None, task.online_dataset))} {online_split}"
    return parse_records(task, split, source, records(), skip_invalid)


def with_label_names(record: dict, label_list: Optional[list]) -> dict:
    """paddlenlp has turned label strings into indices into its label list; turn them back."""
    if not label_list:
        return record
    if isinstance(record.get("label"), int):
        record["label"] = label_list[record["label"]]
    labels = record.get("labels")
    if isinstance(labels, list) and all(isinstance(k, int) and 0 <= k < len(label_list) for k in labels):
        record["labels"] = [label_list[k] for k in labels]
    return record


def load_examples(task: Task, split: str, path: Optional[str], skip_invalid: bool = False) -> list[dict]:
    """A split from the local file when given, else from paddlenlp's online copy of the task's dataset."""
    if path:
        return load_local_examples(task, split, path, skip_invalid)
    return load_online_examples(task, split, skip_invalid)


def sample_file(task_name: str, split: str) -> Optional[str]:
    """The shipped sample file of a task's split, whatever its format's extension (.json, .tsv); None if none."""
    from ernie3.tasks import TASKS

    task = TASKS.get(task_name)
    directory = task.sample_dir() if task is not None else os.path.join(SAMPLES_DIR, task_name)
    found = sorted(glob.glob(os.path.join(glob.escape(directory), f"{split}.*")))
    return found[0] if found else None
