"""A TEST-ONLY task type: multi-label classification (a sigmoid per label, labels above a threshold).

It lives outside ernie3/tasks and reaches the registry through ERNIE3_TASK_MODULES (tests/conftest.py names this
file), to show that a task type written in one file runs through the shared tests (training, export, compress,
infer.py, the deploy predictors, serving, the demo's sample list) without edits to the library or to those tests.
Its samples are tests/fixtures/multi_label/ (made-up headlines with one or two of three topics).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ernie3.tasks.base import Encoded, RecordError, Task, check_text, text_field

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "multi_label")


@dataclass
class MultiLabelOptions:
    threshold: float = field(default=0.5, metadata={"help": "A label is predicted when its probability is at least this."})

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold) or not 0 < self.threshold < 1:
            raise ValueError(f"--threshold must be a probability between 0 and 1 (exclusive), got {self.threshold!r}")


class MultiLabelCollator:
    """Pads token ids like paddlenlp's collator; labels become float32 multi-hot rows (the BCE loss's dtype)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, features: Sequence[dict]) -> dict:
        import paddle

        inputs = [{key: value for key, value in feature.items() if key != "labels"} for feature in features]
        batch = self.tokenizer.pad(inputs, padding=True, return_attention_mask=False, return_tensors="np")
        batch = {key: paddle.to_tensor(value) for key, value in batch.items()}
        if "labels" in features[0]:
            batch["labels"] = paddle.to_tensor(np.asarray([f["labels"] for f in features], dtype="float32"))
        return batch


class MultiLabelTask(Task):
    task_type = "multi_label"
    metric_name = "micro_f1"
    architecture_suffix = "ForSequenceClassification"
    options_class = MultiLabelOptions
    decoding_options = frozenset({"threshold"})
    sample_flags = ("--max_seq_length", "64")
    windowable = True

    def __init__(self, name: str, labels: tuple[str, ...]):
        super().__init__(name, labels, online_dataset=None)

    def sample_dir(self) -> str:
        return SAMPLES

    def sample_inputs(self) -> list[Any]:
        return ["球队在主场赢得冠军", "新款手机搭载自研芯片，股市今天大幅上涨", "银行发布季度财报"]

    def model_class(self) -> Any:
        from paddlenlp.transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def loss_function(self) -> Any:
        import paddle

        return paddle.nn.BCEWithLogitsLoss()

    def distillation_loss(self, student_outputs: Sequence[Any], teacher_outputs: Sequence[Any], batch: Mapping[str, Any],
                          temperature: float) -> Any:
        """Sigmoid heads distil per label: BCE against the teacher's temperature-softened sigmoids."""
        import paddle.nn.functional as F

        student, teacher = student_outputs[0] / temperature, teacher_outputs[0] / temperature
        return F.binary_cross_entropy_with_logits(student, F.sigmoid(teacher)) * temperature**2

    def data_collator(self, tokenizer: Any) -> Any:
        return MultiLabelCollator(tokenizer)

    def parse_record(self, record: Mapping[str, Any], with_label: bool) -> Optional[dict]:
        label = None
        if with_label:
            names = record.get("labels")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise RecordError("field 'labels' must be a list of label names")
            indices = {self.label_index(n, "labels") for n in names}
            label = [1.0 if i in indices else 0.0 for i in range(self.num_labels)]
        return {"id": record.get("id"), "text": text_field(record, "text"), "label": label}

    def example_from_text(self, text: Any) -> dict:
        if not isinstance(text, str):
            raise RecordError(f"{self.name} classifies single texts: expected a text string")
        return {"id": None, "text": check_text(text, "the text"), "label": None}

    def window_texts(self, example: Mapping[str, Any]) -> tuple[Optional[str], str]:
        return None, example["text"]

    def convert_example(self, example: Mapping[str, Any], tokenizer: Any, max_seq_length: int) -> dict:
        encoded = tokenizer(text=example["text"], max_length=max_seq_length, truncation=True, return_attention_mask=False)
        features = {"input_ids": encoded["input_ids"], "token_type_ids": encoded["token_type_ids"]}
        if example.get("label") is not None:
            features["labels"] = example["label"]
        return features

    def decode(self, examples: Sequence[Mapping[str, Any]], encoded: Encoded, outputs: Sequence[np.ndarray]) -> list[dict]:
        return self.postprocess(outputs[0])

    def postprocess(self, logits: np.ndarray) -> list[dict]:
        probs = 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))
        threshold = self.option_values.threshold
        return [{"labels": [self.labels[i] for i in range(len(row)) if row[i] >= threshold],
                 "scores": [float(p) for p in row]} for row in probs]  # fmt: skip

    def score(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> dict:
        """Micro-averaged F1 over (example, label) decisions; also defined for one example with nothing to find."""
        tp = fp = fn = 0
        for example, result in zip(examples, results):
            gold = {self.labels[i] for i, v in enumerate(example["label"]) if v}
            predicted = set(result["labels"])
            tp, fp, fn = tp + len(gold & predicted), fp + len(predicted - gold), fn + len(gold - predicted)
        return {"micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0}

    def prediction_record(self, position: int, example: Mapping[str, Any], result: Mapping[str, Any]) -> dict:
        return {"id": example["id"] if example["id"] is not None else position, "labels": result["labels"]}

    def answer(self, output: dict) -> Any:
        return tuple(output["labels"])


TASKS = (MultiLabelTask("topics", ("sports", "tech", "finance")),)
