"""What every task definition provides, whatever its type."""
from __future__ import annotations

import abc
from typing import Any, ClassVar, Iterator, Mapping, Optional

from ernie3.files import read_json_lines


class RecordError(ValueError):
    """A record that does not fit the task's format; the message names the field."""


def text_field(record: Mapping[str, Any], key: str) -> str:
    """A required, non-empty string field of a raw record."""
    if key not in record:
        raise RecordError(f"missing field '{key}'")
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RecordError(f"field '{key}' is empty")
    return value


class Task(abc.ABC):
    """A task: how raw records become examples and features, its labels, its metric, its outputs."""

    task_type: ClassVar[str]
    #: class-name ending of a model fine-tuned for this task type, as in config.json "architectures"
    architecture_suffix: ClassVar[str]
    #: key of `compute_metrics`' result that picks the best checkpoint
    metric_name: ClassVar[str]

    def __init__(self, name: str, labels: tuple[str, ...], online_dataset: tuple[str, Optional[str]]):
        self.name = name
        self.labels = labels
        # positional arguments of paddlenlp.datasets.load_dataset
        self.online_dataset = online_dataset

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_index(self, label: Any, field: str = "label") -> int:
        """Index of a label in the task definition's label list; unknown labels are an error."""
        text = str(label)
        try:
            return self.labels.index(text)
        except ValueError:
            shown = ", ".join(self.labels) if len(self.labels) <= 20 else f"{len(self.labels)} labels"
            raise RecordError(f"unknown label '{text}' in field '{field}' (task {self.name}: {shown})") from None

    def read_records(self, path: str, flag: str) -> Iterator[tuple[int, Any]]:
        """(line number, raw record) pairs of a local file; JSON lines unless the task's format differs."""
        return read_json_lines(path, flag)

    @abc.abstractmethod
    def parse_record(self, record: Mapping[str, Any], with_label: bool) -> Optional[dict]:
        """Validate one raw record and turn it into an example; None drops the record (e.g. unlabeled NLI rows)."""

    def model_class(self) -> Any:
        """The paddlenlp Auto class whose `from_pretrained` builds this task's model."""
        raise NotImplementedError

    def model_kwargs(self) -> dict:
        """Extra `from_pretrained` arguments: the size and label names of a fresh output head."""
        return {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: index for index, label in enumerate(self.labels)},
        }

    def input_spec(self) -> list:
        """Inputs of the exported static model: batch × sequence token ids and segment ids."""
        from paddle.static import InputSpec

        return [
            InputSpec(shape=[None, None], dtype="int64", name="input_ids"),
            InputSpec(shape=[None, None], dtype="int64", name="token_type_ids"),
        ]

    def describe(self) -> dict:
        """What an exported model records about its task, so later stages can check they got the right one."""
        return {"task_name": self.name, "task_type": self.task_type, "labels": list(self.labels)}
