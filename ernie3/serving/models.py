"""One served model, as both services hold it: its Predictor built from a config entry (any failure one line
naming the model), the warm-up it runs before the service reports ready, its batch statistics, and what GET /models
tells about it."""
from __future__ import annotations

import dataclasses
import os
import threading
from collections import Counter
from typing import Any, Optional

from ernie3.errors import UserError
from ernie3.layout import resolve_model_path
from ernie3.tasks.base import map_texts
from ernie3.serving.config import ModelSpec, tensorrt_options

def resolve_served_path(spec: ModelSpec) -> str:
    """The model a config path means, as infer.py reads it: a compress output dir serves its best/ candidate."""
    if not os.path.exists(spec.path):
        raise UserError(f"model '{spec.name}' could not be loaded: path not found: {spec.path}")
    try:
        return resolve_model_path(spec.path)
    except UserError as exc:  # its messages name infer.py's flag; here the path comes from the config
        raise UserError(f"model '{spec.name}' could not be loaded: {str(exc).removeprefix('--model_path: ')}") from None


def load_predictor(spec: ModelSpec) -> Any:
    """The one place the server builds a Predictor; any failure becomes one clear line naming the model."""
    from ernie3.predict import Predictor

    path = resolve_served_path(spec)
    options = dict(spec.predictor_options)
    if "tensorrt" in options:
        options["tensorrt"] = tensorrt_options(f"model '{spec.name}'", options["tensorrt"])
    try:
        predictor = Predictor(path, **options)
    except UserError as exc:
        raise UserError(f"model '{spec.name}' could not be loaded: {exc}") from None
    except Exception as exc:  # Paddle and the tokenizer raise many kinds; all mean this model cannot serve
        raise UserError(f"model '{spec.name}' could not be loaded from {path}: {last_line(exc)}") from None
    return predictor


def last_line(exc: BaseException) -> str:
    """The telling part of a library's (often multi-line) error message, bounded."""
    text = str(exc).strip()
    return (text.splitlines()[-1].strip() if text else type(exc).__name__)[:300]


def stretched(text: Any, length: int) -> Any:
    """`text` with each of its strings repeated to at least `length` characters, in the same shape."""
    return map_texts(text, lambda string: string * (length // max(len(string), 1) + 1))


def warm_up(name: str, predictor: Any) -> None:
    """Run on the thread that will serve the model, before the server reports ready: a short and a full-length
    prediction (options that load but cannot run show here, not in every request afterwards), then every shape
    bucket once, so that the process holds its steady memory from the start (Paddle's oneDNN keeps its per-shape
    state per thread: warming up on another thread would hold a second copy)."""
    check_first_predictions(name, predictor)
    if hasattr(predictor, "warm_up"):
        predictor.warm_up()


def check_first_predictions(name: str, predictor: Any) -> None:
    """A short and a full-length prediction of the task's first sample input; a failure stops start-up."""
    for candidate in predictor.task.sample_inputs()[:1]:
        try:
            predictor.predict_texts([candidate, stretched(candidate, predictor.max_seq_length)])
        except Exception as exc:  # noqa: BLE001 (any failure here means the model cannot serve)
            raise UserError(f"model '{name}' loaded but failed its first prediction: {last_line(exc)}") from None


class BatchStats:
    """Counters of one model's worker, written by the worker thread and read by request handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.texts = 0
        self.batches = 0
        self.failed_batches = 0
        self.largest_batch_requests = 0
        self.largest_batch_texts = 0
        self.inference_seconds = 0.0
        self.requests_per_batch: Counter = Counter()
        self.split_requests = 0

    def record_split(self) -> None:
        with self._lock:
            self.split_requests += 1

    def record(self, requests: int, texts: int, seconds: float, failed: bool) -> None:
        with self._lock:
            self.batches += 1
            self.failed_batches += int(failed)
            self.requests += requests
            self.texts += texts
            self.inference_seconds += seconds
            self.largest_batch_requests = max(self.largest_batch_requests, requests)
            self.largest_batch_texts = max(self.largest_batch_texts, texts)
            self.requests_per_batch[requests] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "texts": self.texts,
                "batches": self.batches,
                "failed_batches": self.failed_batches,
                "mean_requests_per_batch": round(self.requests / self.batches, 3) if self.batches else 0.0,
                "largest_batch_requests": self.largest_batch_requests,
                "largest_batch_texts": self.largest_batch_texts,
                "requests_per_batch": {str(k): v for k, v in sorted(self.requests_per_batch.items())},
                # requests larger than a batch, run in parts that took turns with other requests
                "split_requests": self.split_requests,
                "inference_seconds": round(self.inference_seconds, 4),
            }


def describe_model(spec: ModelSpec, predictor: Any, stats: dict, **state: Any) -> dict:
    """What GET /models tells about a model: its task, how it runs, its limits, state and batch statistics; no
    filesystem paths (they tell a client nothing it needs, and an attacker something)."""
    task = predictor.task
    shown_options = {k: v for k, v in spec.predictor_options.items() if k in ("num_threads", "batch_size")}
    return {
        "name": spec.name,
        **task.describe(),
        # what one text of a request holds: ["text"], ["text", "text_pair"], ["question", "context"], ...
        "inputs": list(task.input_flags),
        "max_seq_length": predictor.max_seq_length,
        # what the Predictor chose where the config left it to defaults or "auto"
        "backend": predictor.backend_name,
        "device": predictor.device,
        "precision": predictor.precision,
        **shown_options,
        "limits": dataclasses.asdict(spec.limits),
        **state,
        "stats": stats,
    }


def recorded_max_seq_length(predictor: Any) -> Optional[int]:
    """The max_seq_length the model's ernie3_task.json records (what it was fine-tuned and exported with)."""
    from ernie3.model_files import read_task_info

    try:
        return read_task_info(os.path.dirname(os.path.abspath(predictor.model_file))).get("max_seq_length")
    except (UserError, OSError, ValueError, AttributeError):
        return None


