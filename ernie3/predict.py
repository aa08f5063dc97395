"""One predictor for every deployment: raw examples → tokenizer → a backend (Paddle Inference CPU/GPU/TensorRT,
ONNX Runtime) → the task's own post-processing."""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from ernie3.errors import UserError
from ernie3.backends import TensorRTOptions, create_backend, default_backend
from ernie3.export import task_of_model_dir
from ernie3.fast_tokenizer import tokenizer_for_task
from ernie3.layout import FAST_TOKENIZER_KEY
from ernie3.logs import library_logger
from ernie3.memory import ShapeBuckets, estimate_peak_rss_mb, model_dims
from ernie3.model_files import read_task_info
from ernie3.standalone_tokenizer import verified_standalone
from ernie3.tasks.base import IGNORE_INDEX


#: backends that run without paddle: their predictors use the standalone tokenizer where it was verified
PADDLE_FREE_BACKENDS = ("openvino", "onnxruntime")

#: a run of rows that fills at least this share of the next batch bucket is padded up to it with repeated rows
#: rather than split into smaller buckets (measured on the soak traffic: fewer, fuller runs are faster)
FILL_TO_PAD = 0.75


class Predictor:
    """Raw examples in, task results out, through any backend of ernie3.backends."""

    def __init__(
        self,
        model_path: str,
        backend: Optional[str] = None,
        device: str = "cpu",
        precision: str = "auto",
        num_threads: int = 1,
        batch_size: int = 32,
        max_seq_length: Optional[int] = None,
        tensorrt: Optional[TensorRTOptions] = None,
        model_prefix: Optional[str] = None,
        warmup: bool = False,
        tokenizer: str = "auto",
        task_options: Optional[Mapping[str, Any]] = None,
    ):
        """`model_path`: a model directory written by --do_export or the compress scripts, a static program
        file, or an .onnx file; the tokenizer and ernie3_task.json are read from the same directory.

        `batch_size` and `max_seq_length` bound the largest shape the model runs; every batch runs in one of the
        shapes of `self.buckets`, so memory is set by these two settings, not by traffic. `warmup` runs every
        bucket shape once before the first batch of each thread that uses the predictor (Paddle's oneDNN keeps its
        per-shape state per thread: a service's worker thread must warm up itself): from then on memory holds at
        `expected_peak_rss_mb` and no request pays for a first run of a shape.

        `tokenizer`: fast (Rust WordPiece, ernie3/fast_tokenizer.py), paddlenlp (its Python ErnieTokenizer), or auto:
        the fast one when it gives paddlenlp's ids on probe texts and the task's sample inputs, else paddlenlp's
        (`tokenizer_choice` says which and why).

        `task_options`: values of the task's decoding options ({name: value}, e.g. QA's max_answer_length) that
        replace those recorded with the model; options that shape features cannot change without a new export."""
        model_dir = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
        if not os.path.exists(model_path):
            raise UserError(f"model path not found: {model_path}")
        self.task = task_of_model_dir(model_dir).with_decoding_options(task_options or {})
        self.batch_size = batch_size
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        backend = backend or default_backend(model_path)  # a compress candidate's candidate.json, else by file type
        standalone, why_not = None, ""
        if backend in PADDLE_FREE_BACKENDS and tokenizer in ("auto", "fast"):
            # proven against paddlenlp's where the model was written: this process then imports nothing of paddle
            standalone, why_not = verified_standalone(model_dir, read_task_info(model_dir).get(FAST_TOKENIZER_KEY))
        self.tokenizer = standalone or load_model_tokenizer(model_dir)
        self.max_seq_length = checked_max_seq_length(model_dir, max_seq_length, self.tokenizer)
        if standalone is not None:
            self.tokenizer_choice, notable = why_not, False
        else:
            self.tokenizer, self.tokenizer_choice, notable = tokenizer_for_task(self.tokenizer, tokenizer, self.task,
                                                                                self.max_seq_length)  # fmt: skip
            if why_not:
                self.tokenizer_choice += f" (no standalone tokenizer: {why_not})"
        logger = library_logger()
        (logger.warning if notable else logger.info)(f"tokenizer: {self.tokenizer_choice}")
        # oneDNN keeps state for every input shape it meets, for the life of the process: batches run only in
        # these shapes (see ernie3/memory.py)
        self.buckets = ShapeBuckets.for_limits(batch_size, self.max_seq_length)
        self.backend = create_backend(model_path, backend, device, precision, num_threads, tensorrt, model_prefix)
        self.backend_name, self.device, self.precision = backend, self.backend.device, self.backend.precision
        self.model_file = self.backend.model_file
        self.input_names = self.backend.input_names
        #: whether this predictor needs nothing of paddle (its process loads it only for other reasons)
        self.paddle_free = standalone is not None
        self.expected_peak_rss_mb = estimate_peak_rss_mb(
            model_dims(self.model_file), self.buckets, backend, self.precision, paddle_free=self.paddle_free
        )
        self.warmup = warmup
        self._warm_threads: set[int] = set()

    def memory_plan(self) -> dict:
        """The shapes this predictor runs and the RSS a process serving it is expected to reach."""
        return {**self.buckets.describe(), "expected_peak_rss_mb": round(self.expected_peak_rss_mb)}

    def warm_up(self, after_each: Optional[Callable[[int, int], None]] = None) -> None:
        """Every bucket shape once, largest first (later, smaller shapes then fit in memory already reserved);
        `after_each(batch, length)` is called after each shape (the soak benchmark records RSS there)."""
        self._warm_threads.add(threading.get_ident())
        for batch, length in reversed(self.buckets.shapes()):
            ids = np.full((batch, length), self.tokenizer.cls_token_id, dtype=np.int64)
            self.backend.run({name: ids if name == "input_ids" else np.zeros_like(ids) for name in self.input_names})
            if after_each is not None:
                after_each(batch, length)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One batch of padded feature arrays → the model's raw outputs."""
        if self.warmup and threading.get_ident() not in self._warm_threads:
            self.warm_up()
        return self.backend.run(inputs)

    def plan(self, features: Sequence[dict]) -> list[list[int]]:
        """Which features run together: longest first, so that each run's rows have similar lengths and it is
        padded to a small sequence bucket. A run's row count is a batch bucket, or a little under one: rows that
        fill at least FILL_TO_PAD of the next bucket run as one batch padded with copies of a row (13 → 16), fewer
        are split into buckets (9 → 8 + 1), since several small runs cost more than a few wasted rows."""
        lengths = [len(f["input_ids"]) for f in features]
        too_long = max(lengths, default=0)
        if too_long > self.buckets.max_seq_length:
            raise UserError(f"a feature has {too_long} tokens, more than max_seq_length {self.buckets.max_seq_length}")
        order = sorted(range(len(features)), key=lambda i: -lengths[i])  # stable: equal lengths keep their order
        runs, start = [], 0
        while start < len(order):
            left = len(order) - start
            fitting = min(b for b in self.buckets.batch_sizes if b >= left) if left <= self.buckets.max_batch_size else None
            if fitting is not None and left >= FILL_TO_PAD * fitting:
                rows = left
            else:
                rows = max(b for b in self.buckets.batch_sizes if b <= left)
            runs.append(order[start : start + rows])
            start += rows
        return runs

    def pad(self, features: Sequence[dict]) -> dict[str, np.ndarray]:
        """Features padded to their batch and sequence buckets: extra rows repeat the last feature (their outputs
        are dropped), padded positions hold the pad token, which the model masks."""
        length = self.buckets.seq_length(max(len(f["input_ids"]) for f in features))
        rows = self.buckets.batch_size(len(features))
        chunk = [{name: f[name] for name in self.input_names} for f in features]
        chunk += [chunk[-1]] * (rows - len(chunk))
        padded = self.tokenizer.pad(chunk, padding="max_length", max_length=length, return_attention_mask=False,
                                    return_tensors="np")  # fmt: skip
        return {name: padded[name] for name in self.input_names}

    def batches(self, features: Sequence[dict]) -> Iterator[dict[str, np.ndarray]]:
        """The padded batches `outputs` runs, in its order (each one shape of `self.buckets`)."""
        for run in self.plan(features):
            yield self.pad([features[i] for i in run])

    def outputs(self, features: Sequence[dict], run: Optional[Callable[[dict], list]] = None) -> list[np.ndarray]:
        """All features through the model: per model output, one row per feature, in the order of `features`.

        `run` replaces the backend (e.g. the dygraph model, to compare it with the export on the same batches)."""
        run = run or self.run
        runs = self.plan(features)
        # rows beyond a run's own are the batch bucket's padding rows
        per_batch = [[np.asarray(out)[: len(rows)] for out in run(self.pad([features[i] for i in rows]))] for rows in runs]
        order = np.array([i for run in runs for i in run])
        result = []
        for k in range(len(per_batch[0])):
            stacked = concatenate_rows([outputs[k] for outputs in per_batch])
            in_order = np.empty_like(stacked)
            in_order[order] = stacked
            result.append(in_order)
        return result

    def logits(self, examples: Sequence[dict]) -> np.ndarray:
        """The first model output, for tasks where each example gives one feature (classification logits)."""
        return self.outputs(self.task.encode(examples, self.tokenizer, self.max_seq_length).features)[0]

    def predict(self, examples: Sequence[dict]) -> list[dict]:
        """Task results for validated examples, by the task's own decoding: label and probability (seq_cls),
        entities with character offsets (token_cls), answer text with character span and score over all of a
        context's windows (qa)."""
        if not examples:
            return []
        encoded = self.task.encode(examples, self.tokenizer, self.max_seq_length)
        return self.task.decode(examples, encoded, self.outputs(encoded.features))

    def predict_texts(self, texts: Sequence[Any]) -> list[dict]:
        """Outputs for raw inputs: a text or (text, text_pair) for seq_cls, a sentence for token_cls,
        {"question": ..., "context": ...} for qa."""
        examples = [self.task.example_from_text(text) for text in texts]
        return self.predict(examples)


def checked_max_seq_length(model_dir: str, requested: Optional[int], tokenizer: Any) -> int:
    """The length the model was exported with, or the requested one when it fits the model (said when they differ)."""
    info = read_task_info(model_dir)
    recorded = info["max_seq_length"]
    if requested is None or requested == recorded:
        return recorded
    limit = info.get("max_position_embeddings")
    if limit and requested > limit:
        raise UserError(f"max_seq_length {requested} exceeds the model's {limit} position embeddings")
    if requested <= tokenizer.num_special_tokens_to_add(pair=True):
        raise UserError(f"max_seq_length {requested} leaves no room for text after the special tokens")
    library_logger().warning(f"{model_dir} was exported with max_seq_length {recorded}; using {requested} as asked")
    return requested


def load_model_tokenizer(model_dir: str) -> Any:
    """The tokenizer saved beside an exported model; a missing or damaged one is one clear error."""
    from paddlenlp.transformers import AutoTokenizer

    from ernie3.vocab import attach_wordpiece_vocabulary

    if not os.path.isfile(os.path.join(model_dir, "vocab.txt")):
        raise UserError(f"{model_dir} has no vocab.txt: the tokenizer saved with the model is missing")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as exc:  # paddlenlp raises JSONDecodeError/OSError/TypeError for damaged tokenizer files
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{model_dir}: the tokenizer files are damaged ({reason})") from None
    return attach_wordpiece_vocabulary(tokenizer, model_dir)




def concatenate_rows(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Stack batches of one output; per-token outputs are padded to the longest sequence first."""
    if arrays[0].ndim < 2:
        return np.concatenate(arrays, axis=0)
    length = max(array.shape[1] for array in arrays)
    padded = [
        np.pad(a, [(0, 0), (0, length - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=IGNORE_INDEX)
        for a in arrays
    ]
    return np.concatenate(padded, axis=0)
