"""One predictor for every deployment: raw examples → tokenizer → a backend (Paddle Inference CPU/GPU/TensorRT,
ONNX Runtime) → the task's own post-processing."""
from __future__ import annotations

import os
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ernie3.errors import UserError
from ernie3.backends import TensorRTOptions, create_backend, default_backend
from ernie3.export import read_task_info, task_of_model_dir


SEQUENCE_BUCKET = 16


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
    ):
        """`model_path`: a model directory written by --do_export or the compress scripts, a static program
        file, or an .onnx file; the tokenizer and ernie3_task.json are read from the same directory."""
        from paddlenlp.data import DataCollatorWithPadding

        model_dir = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
        if not os.path.exists(model_path):
            raise UserError(f"model path not found: {model_path}")
        self.task = task_of_model_dir(model_dir)
        self.batch_size = batch_size
        self.tokenizer = load_model_tokenizer(model_dir)
        self.max_seq_length = checked_max_seq_length(model_dir, max_seq_length, self.tokenizer)
        # oneDNN compiles kernels per input shape: rounding sequence lengths up to a multiple of 16 bounds how many
        # shapes a long-running service meets (and some of its memory growth); padded positions are masked out
        self.collate = DataCollatorWithPadding(self.tokenizer, return_tensors="np", pad_to_multiple_of=SEQUENCE_BUCKET)
        backend = backend or default_backend(model_path)  # a compress candidate's candidate.json, else by file type
        self.backend = create_backend(model_path, backend, device, precision, num_threads, tensorrt, model_prefix)
        self.backend_name, self.device, self.precision = backend, self.backend.device, self.backend.precision
        self.model_file = self.backend.model_file
        self.input_names = self.backend.input_names

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One batch of padded feature arrays → the model's raw outputs."""
        return self.backend.run(inputs)

    def batches(self, features: Sequence[dict]) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(features), self.batch_size):
            chunk = [{name: f[name] for name in self.input_names} for f in features[start : start + self.batch_size]]
            yield self.collate(chunk)

    def outputs(self, features: Sequence[dict]) -> list[np.ndarray]:
        """All features through the model, batch by batch: per model output, one row per feature."""
        per_batch = [self.run(batch) for batch in self.batches(features)]
        return [concatenate_rows([outputs[k] for outputs in per_batch]) for k in range(len(per_batch[0]))]

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
    from paddlenlp.utils.log import logger

    logger.warning(f"{model_dir} was exported with max_seq_length {recorded}; using {requested} as asked")
    return requested


def load_model_tokenizer(model_dir: str) -> Any:
    """The tokenizer saved beside an exported model; a missing or damaged one is one clear error."""
    from paddlenlp.transformers import AutoTokenizer

    if not os.path.isfile(os.path.join(model_dir, "vocab.txt")):
        raise UserError(f"{model_dir} has no vocab.txt: the tokenizer saved with the model is missing")
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except Exception as exc:  # paddlenlp raises JSONDecodeError/OSError/TypeError for damaged tokenizer files
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{model_dir}: the tokenizer files are damaged ({reason})") from None


#: value of padded positions when sequence outputs of different batch lengths are stacked (as the Trainer pads)
OUTPUT_PADDING = -100


def concatenate_rows(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Stack batches of one output; per-token outputs are padded to the longest sequence first."""
    if arrays[0].ndim < 2:
        return np.concatenate(arrays, axis=0)
    length = max(array.shape[1] for array in arrays)
    padded = [
        np.pad(a, [(0, 0), (0, length - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=OUTPUT_PADDING)
        for a in arrays
    ]
    return np.concatenate(padded, axis=0)
