"""INT8 through NNCF for the OpenVINO backend: post-training quantization of a float export (or a DynaBERT-pruned
one) with the task's real calibration examples, optionally accuracy-controlled on dev with the task's own metric.

Each result is a candidate directory that loads on its own: model.xml/.bin (OpenVINO IR), the tokenizer, the task
record and candidate.json (backend openvino, precision int8).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ernie3.backends import find_openvino_model, read_openvino_model
from ernie3.layout import CANDIDATE_FILE, OPENVINO_IR_FILE, TASK_INFO_FILE
from ernie3.errors import UserError
from ernie3.files import atomic_directory
from ernie3.logs import verbose
from ernie3.model_files import read_openvino_ir
from ernie3.standalone_tokenizer import TOKENIZER_FILES
from ernie3.tasks import Task

#: NNCF's own default: enough activations for stable ranges, a few seconds on a small model
DEFAULT_SUBSET_SIZE = 300
# files that make a model directory loadable by the Predictor besides the model itself
SIDE_FILES = (TASK_INFO_FILE, *TOKENIZER_FILES)


@dataclass
class NNCFQuantization:
    """How to quantize: calibration size, and whether NNCF keeps the metric within `max_metric_drop` (relative)."""

    subset_size: int = DEFAULT_SUBSET_SIZE
    accuracy_control: bool = False
    max_metric_drop: float = 0.01
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.subset_size < 1:
            raise UserError("NNCF calibration subset size must be at least 1")
        if self.accuracy_control and not 0 <= self.max_metric_drop < 1:
            raise UserError("--max_metric_drop must be in [0, 1) for accuracy-controlled quantization")


def feature_batches(features: Sequence[dict], input_names: Sequence[str], tokenizer: Any, batch_size: int):
    """Padded int64 feed dicts of `batch_size` features, each padded to a sequence bucket as the Predictor pads."""
    from ernie3.memory import SEQUENCE_BUCKETS

    for start in range(0, len(features), batch_size):
        chunk = [{name: f[name] for name in input_names} for f in features[start : start + batch_size]]
        longest = max(len(f["input_ids"]) for f in chunk)
        length = next((bucket for bucket in SEQUENCE_BUCKETS if bucket >= longest), longest)
        padded = tokenizer.pad(chunk, padding="max_length", max_length=length, return_attention_mask=False,
                               return_tensors="np")  # fmt: skip
        yield {name: np.asarray(padded[name], dtype=np.int64) for name in input_names}


def make_validation_function(task: Task, tokenizer: Any, max_seq_length: int, batch_size: int) -> Callable:
    """NNCF's validation_fn: (compiled model, examples) → (the task's metric, per-example metric) via the task's
    own encode → model → decode → score, as the Predictor computes it."""
    from ernie3.predict import concatenate_rows

    def validate(compiled_model: Any, items: Any) -> tuple[float, list[float]]:
        examples = list(items)
        encoded = task.encode(examples, tokenizer, max_seq_length)
        names = [port.get_any_name() for port in compiled_model.inputs]
        per_batch = []
        for feed in feature_batches(encoded.features, names, tokenizer, batch_size):
            result = compiled_model(feed)
            per_batch.append([np.asarray(result[port]) for port in compiled_model.outputs])
        outputs = [concatenate_rows([batch[k] for batch in per_batch]) for k in range(len(per_batch[0]))]
        results = task.decode(examples, encoded, outputs)
        metric = float(task.score(examples, results)[task.metric_name])
        # per-example values let NNCF rank which layers to return to float when the drop is too large
        per_example = [float(task.score([e], [r])[task.metric_name]) for e, r in zip(examples, results)]
        return metric, per_example

    return validate


def quantize_with_nncf(
    source_dir: str,
    output_dir: str,
    task: Task,
    tokenizer: Any,
    calibration_examples: Sequence[dict],
    max_seq_length: int,
    settings: NNCFQuantization,
    validation_examples: Optional[Sequence[dict]] = None,
) -> str:
    """Quantize the float model in `source_dir` (its Paddle export, or model.onnx) to an INT8 OpenVINO IR candidate."""
    import nncf
    import openvino as ov

    if settings.accuracy_control and not validation_examples:
        raise UserError("accuracy-controlled quantization needs dev examples")
    if not calibration_examples:
        raise UserError("NNCF quantization needs calibration examples (the dev set is empty)")
    model = read_openvino_model(find_openvino_model(source_dir))
    input_names = [port.get_any_name() for port in model.inputs]
    encoded = task.encode(list(calibration_examples)[: settings.subset_size], tokenizer, max_seq_length)
    # one feature per calibration item: NNCF counts `subset_size` in items, and activations keep their real length
    calibration = nncf.Dataset(list(feature_batches(encoded.features, input_names, tokenizer, 1)))
    common = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": min(settings.subset_size, len(encoded.features))}
    # NNCF draws its progress bars and logs its INFO lines on stdout, where the scripts print their reports: the bars
    # go to stderr instead, the INFO lines only with --verbose
    if not verbose():
        logging.getLogger("nncf").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        quantized = _quantize(nncf, model, calibration, common, settings, task, tokenizer, max_seq_length,
                              validation_examples)  # fmt: skip
    with atomic_directory(output_dir) as staging:
        ov.save_model(quantized, os.path.join(staging, OPENVINO_IR_FILE), compress_to_fp16=False)
        for name in SIDE_FILES:
            if os.path.isfile(os.path.join(source_dir, name)):
                shutil.copy2(os.path.join(source_dir, name), staging)
        write_candidate_record(staging, "openvino", "int8", OPENVINO_IR_FILE,
                               accuracy_control=settings.accuracy_control, calibration_items=common["subset_size"])  # fmt: skip
    return output_dir


def _quantize(nncf: Any, model: Any, calibration: Any, common: dict, settings: Any, task: Task, tokenizer: Any,
              max_seq_length: int, validation_examples: Optional[Sequence[dict]]) -> Any:
    """NNCF post-training quantization, accuracy-controlled with the task's own metric when asked for."""
    if settings.accuracy_control:
        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration_dataset=calibration,
            validation_dataset=nncf.Dataset(list(validation_examples)),
            validation_fn=make_validation_function(task, tokenizer, max_seq_length, settings.batch_size),
            max_drop=settings.max_metric_drop,
            drop_type=nncf.DropType.RELATIVE,
            **common,
        )
    else:
        quantized = nncf.quantize(model, calibration, **common)
    return quantized


def write_candidate_record(directory: str, backend: str, precision: str, model_file: str, **extra: Any) -> None:
    """candidate.json: which backend and precision run this directory (read by ernie3.backends.create_backend)."""
    record = {"backend": backend, "precision": precision, "model_file": model_file, **extra}
    with open(os.path.join(directory, CANDIDATE_FILE), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)


def quantized_op_counts(model_file: str) -> dict[str, int]:
    """How many quantization ops an OpenVINO IR holds, read from the model (FakeQuantize, and INT8 constants)."""
    model = read_openvino_ir(model_file)
    counts = {"FakeQuantize": 0, "int8_constants": 0}
    for op in model.get_ops():
        if op.get_type_name() == "FakeQuantize":
            counts["FakeQuantize"] += 1
        elif op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in ("i8", "u8"):
            counts["int8_constants"] += 1
    return counts
