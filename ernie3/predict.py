"""One predictor over exported static models: raw examples → tokenizer → Paddle Inference → task outputs."""
from __future__ import annotations

import os
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ernie3.errors import UserError
from ernie3.export import STATIC_MODEL_PREFIX, read_task_info, task_of_model_dir


def find_static_model(model_dir: str, prefix: str = STATIC_MODEL_PREFIX) -> tuple[str, str]:
    """(program file, params file) of a static model directory."""
    if not os.path.isdir(model_dir):
        raise UserError(f"model directory not found: {model_dir}")
    for suffix in (".pdmodel", ".json"):
        program = os.path.join(model_dir, prefix + suffix)
        params = os.path.join(model_dir, prefix + ".pdiparams")
        if os.path.isfile(program) and os.path.isfile(params):
            return program, params
    raise UserError(f"{model_dir} holds no static model ({prefix}.pdmodel + {prefix}.pdiparams)")


# Ops that only a quantized program holds (new "ONNX" format and the older fake-quant format).
QUANT_OPS = {
    "quantize_linear", "dequantize_linear", "fake_quantize_abs_max", "fake_quantize_range_abs_max",
    "fake_quantize_moving_average_abs_max", "fake_channel_wise_quantize_abs_max",
    "fake_quantize_dequantize_moving_average_abs_max", "fake_channel_wise_quantize_dequantize_abs_max",
    "fake_dequantize_max_abs", "fake_channel_wise_dequantize_max_abs",
}  # fmt: skip
# Ops oneDNN runs in INT8; PaddleNLP's deploy choice, which keeps argmax agreement with FP32 near 100%.
ONEDNN_INT8_OPS = {"fc", "reshape2", "transpose2", "slice"}


def is_quantized_model(program_file: str) -> bool:
    """Whether a static program was quantized, read from its ops rather than its file name."""
    with open(program_file, "rb") as handle:
        content = handle.read()
    if program_file.endswith(".json"):  # PIR program
        return any(op.encode() in content for op in QUANT_OPS)
    from paddle.base import core

    desc = core.ProgramDesc(content)
    op_types = {
        desc.block(b).op(o).type() for b in range(desc.num_blocks()) for o in range(desc.block(b).op_size())
    }
    return bool(op_types & QUANT_OPS)


class Predictor:
    """Paddle Inference on CPU (oneDNN) for a model directory written by --do_export."""

    def __init__(
        self,
        model_dir: str,
        num_threads: int = 1,
        batch_size: int = 32,
        max_seq_length: Optional[int] = None,
        model_prefix: str = STATIC_MODEL_PREFIX,
        precision: str = "auto",
    ):
        import paddle.inference as paddle_infer
        from paddlenlp.data import DataCollatorWithPadding
        from paddlenlp.transformers import AutoTokenizer

        program, params = find_static_model(model_dir, model_prefix)
        self.task = task_of_model_dir(model_dir)
        self.max_seq_length = max_seq_length or read_task_info(model_dir)["max_seq_length"]
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.collate = DataCollatorWithPadding(self.tokenizer, return_tensors="np")

        quantized = is_quantized_model(program)
        if precision == "auto":
            precision = "int8" if quantized else "fp32"
        if precision == "int8" and not quantized:
            raise UserError(f"{program} is not a quantized model; INT8 needs a model from the compress scripts")
        if precision not in ("fp32", "int8"):
            raise UserError(f"precision '{precision}' is not supported on CPU (choose fp32 or int8)")
        self.precision = precision

        config = paddle_infer.Config(program, params)
        config.disable_gpu()
        config.enable_mkldnn()
        if precision == "int8":
            config.enable_mkldnn_int8(ONEDNN_INT8_OPS)
        config.set_cpu_math_library_num_threads(num_threads)
        config.disable_glog_info()
        self.predictor = paddle_infer.create_predictor(config)
        self.input_names = self.predictor.get_input_names()

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One batch of padded feature arrays → the model's raw outputs."""
        for name in self.input_names:
            handle = self.predictor.get_input_handle(name)
            handle.copy_from_cpu(np.ascontiguousarray(inputs[name], dtype=np.int64))
        self.predictor.run()
        return [self.predictor.get_output_handle(name).copy_to_cpu() for name in self.predictor.get_output_names()]

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
