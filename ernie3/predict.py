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


class Predictor:
    """Paddle Inference on CPU (oneDNN) for a model directory written by --do_export."""

    def __init__(
        self,
        model_dir: str,
        num_threads: int = 1,
        batch_size: int = 32,
        max_seq_length: Optional[int] = None,
        model_prefix: str = STATIC_MODEL_PREFIX,
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

        config = paddle_infer.Config(program, params)
        config.disable_gpu()
        config.enable_mkldnn()
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

    def logits(self, examples: Sequence[dict]) -> np.ndarray:
        features = [self.task.convert_example(e, self.tokenizer, self.max_seq_length) for e in examples]
        return np.concatenate([self.run(batch)[0] for batch in self.batches(features)], axis=0)

    def predict(self, examples: Sequence[dict]) -> list[dict]:
        """Task outputs (e.g. label and probability) for validated examples."""
        return self.task.postprocess(self.logits(examples))

    def predict_texts(self, texts: Sequence[Any]) -> list[dict]:
        """Outputs for raw texts: a string, or a (text, text_pair) pair, per input."""
        examples = [self.task.example_from_text(text) for text in texts]
        return self.predict(examples)
