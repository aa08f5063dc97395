"""ONNX Runtime on CPU (FP32, or the dynamic INT8 of `ernie3.onnx.quantize_onnx_dynamic`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ernie3.errors import UserError
from ernie3.model_files import load_onnx

class OnnxRuntimeBackend:
    """ONNX Runtime on CPU for models exported with paddle2onnx (FP32, or dynamically quantized INT8)."""

    name = "onnxruntime"

    def __init__(self, onnx_file: str, num_threads: int = 1):
        import onnxruntime

        graph = load_onnx(onnx_file, load_external_data=False).graph  # damaged files: the loader's one line
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph exceptions
            raise UserError(f"{onnx_file} is not a loadable ONNX model ({str(exc).splitlines()[0][:160]})") from None
        self.model_file = onnx_file
        self.device = "cpu"
        self.precision = "int8" if is_quantized_graph(graph) else "fp32"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.int64) for name in self.input_names}
        return self.session.run(self.output_names, feed)


def is_quantized_onnx(onnx_file: str) -> bool:
    return is_quantized_graph(load_onnx(onnx_file, load_external_data=False).graph)


def is_quantized_graph(graph: Any) -> bool:
    """Whether an ONNX graph holds ONNX Runtime's dynamic INT8 (or QDQ) ops."""
    return any(node.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul", "DequantizeLinear")
               for node in graph.node)  # fmt: skip
