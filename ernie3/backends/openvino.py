"""OpenVINO on CPU: FP32, BF16 (native only) and INT8 (NNCF); reads Paddle static models, ONNX and its own IR."""
from __future__ import annotations

import os
import tempfile
from typing import Optional

import numpy as np

from ernie3.errors import UserError
from ernie3.backends import base
from ernie3.model_files import first_line, load_onnx, read_openvino_ir
from ernie3.backends.paddle import is_quantized_model
from ernie3.layout import ONNX_FILE, OPENVINO_IR_FILE, QUANTIZED_PREFIX, STATIC_MODEL_PREFIX

class OpenVinoBackend:
    """OpenVINO on CPU: reads the Paddle static export or an .onnx file with its own frontends (FP32, BF16), or an
    OpenVINO IR (.xml/.bin) quantized by NNCF (INT8, see ernie3.openvino_quant)."""

    name = "openvino"

    def __init__(self, model_path: str, precision: str = "auto", num_threads: int = 1, model_prefix: Optional[str] = None):
        import openvino as ov

        model_file = find_openvino_model(model_path, model_prefix)
        self.model_file, self.device = model_file, "cpu"
        model = read_openvino_model(model_file)
        quantized = is_quantized_openvino(model)
        if precision == "auto":
            precision = "int8" if quantized else "fp32"
        if precision not in ("fp32", "bf16", "int8"):
            raise UserError(f"OpenVINO precision '{precision}' is not one of fp32, bf16, int8")
        if precision == "int8" and not quantized:
            raise UserError(f"{model_file} is not quantized: OpenVINO INT8 needs an NNCF model from compress (--engines openvino)")
        if quantized and precision != "int8":
            raise UserError(f"{model_file} is quantized: run it with precision int8")
        if precision == "bf16":
            base.check_bf16_supported()
        # the CPU plugin defaults to BF16 wherever the CPU has it: FP32 must be asked for; INT8 models keep their
        # other ops in BF16 when the CPU has it natively (the measured fast path), else FP32
        hint = "bf16" if precision == "bf16" or (precision == "int8" and base.cpu_has_native_bf16()) else "f32"
        config = {
            "INFERENCE_NUM_THREADS": num_threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": hint,
        }
        self.precision = precision
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.int64) for name in self.input_names}
        results = self.request.infer(feed)
        # copies: the request reuses its output buffers on the next call
        return [np.array(results[port]) for port in self.compiled.outputs]


def find_openvino_model(model_path: str, model_prefix: Optional[str] = None) -> str:
    """The file OpenVINO reads from a model path: an IR .xml, an .onnx, or a Paddle .pdmodel (its own frontends)."""
    if os.path.isfile(model_path):
        if model_path.endswith((".xml", ".onnx", ".pdmodel")):
            return model_path
        raise UserError(f"{model_path}: OpenVINO reads .xml (IR), .onnx or .pdmodel files")
    if not os.path.isdir(model_path):
        raise UserError(f"model path not found: {model_path}")
    names = [model_prefix] if model_prefix and "." in model_prefix else []
    names += [OPENVINO_IR_FILE, ONNX_FILE, f"{model_prefix or STATIC_MODEL_PREFIX}.pdmodel", f"{QUANTIZED_PREFIX}.pdmodel"]
    for name in names:
        if os.path.isfile(os.path.join(model_path, name)):
            return os.path.join(model_path, name)
    raise UserError(f"{model_path} holds no model OpenVINO reads (model.xml, model.onnx or model.pdmodel)")


def read_openvino_model(model_file: str):
    """An ov.Model from an IR, ONNX or Paddle float program. A quantized Paddle program is refused (OpenVINO
    cannot read its dequantize_linear scales); a Paddle program its frontend cannot convert (the QA export's
    start/end split over a dynamic length) is converted through paddle2onnx in a temporary directory."""
    import openvino as ov

    core = ov.Core()
    if model_file.endswith(".xml"):
        return read_openvino_ir(model_file)
    if model_file.endswith(".onnx"):
        load_onnx(model_file)  # damaged files: the loader's one line, as for ONNX Runtime
        try:
            return core.read_model(model_file)
        except Exception as exc:  # OpenVINO raises RuntimeError/OVError subclasses with long C++ traces
            raise UserError(f"OpenVINO cannot read {model_file} ({first_line(exc)})") from None
    if is_quantized_model(model_file):
        raise UserError(
            f"{model_file} is a quantized Paddle program, which OpenVINO cannot read: give it the float export "
            "and quantize with NNCF (compress --engines openvino), or run this one with --backend paddle"
        )
    try:
        return core.read_model(model_file)
    except Exception as exc:
        paddle_error = first_line(exc)
    from ernie3.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="ernie3-ov-") as scratch:
        try:
            onnx_file = export_onnx(os.path.dirname(model_file), scratch,
                                    prefix=os.path.splitext(os.path.basename(model_file))[0])  # fmt: skip
            model = core.read_model(onnx_file)
            # weights are in memory once read; the temporary ONNX file can go
            return model
        except UserError as exc:
            raise UserError(f"OpenVINO cannot read {model_file} ({paddle_error}), nor its paddle2onnx conversion ({exc})") from None


def is_quantized_openvino(model) -> bool:
    """Whether an ov.Model holds INT8 quantization (NNCF inserts FakeQuantize before quantized ops)."""
    return any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops())
