"""Inference backends: one padded batch of int64 features in, the model's raw outputs out.

Pre- and post-processing live in the task definitions; the Predictor (ernie3/predict.py) joins the two.
One module per engine behind the `Backend` protocol (base.py): Paddle Inference (CPU oneDNN FP32/BF16/INT8,
GPU/TensorRT), ONNX Runtime (CPU), OpenVINO (CPU FP32/BF16, INT8 from NNCF).
"""
from __future__ import annotations

import os
from typing import Optional

from ernie3.backends.base import (
    BACKENDS,
    BF16_CPU_FLAGS,
    PRECISIONS,
    TENSORRT_PRECISIONS,
    Backend,
    check_bf16_supported,
    cpu_has_native_bf16,
    default_backend,
    find_static_model,
    model_size_mb,
    read_candidate_settings,
)
from ernie3.backends.onnxruntime import OnnxRuntimeBackend, is_quantized_onnx
from ernie3.backends.openvino import OpenVinoBackend, find_openvino_model, is_quantized_openvino, read_openvino_model
from ernie3.backends.paddle import (
    ONEDNN_INT8_OPS,
    QUANT_OPS,
    PaddleBackend,
    TensorRTOptions,
    apply_tensorrt,
    is_quantized_model,
    paddle_error_summary,
)
from ernie3.errors import UserError
from ernie3.layout import CANDIDATE_FILE, ONNX_FILE, OPENVINO_IR_FILE


def create_backend(
    model_path: str,
    backend: Optional[str] = None,
    device: str = "cpu",
    precision: str = "auto",
    num_threads: int = 1,
    tensorrt: Optional[TensorRTOptions] = None,
    model_prefix: Optional[str] = None,
) -> Backend:
    """The backend for a model path. Without `backend`/`precision`, a candidate directory's candidate.json decides
    (so compress's best/ runs as it was measured), else the file type: .onnx → ONNX Runtime, .xml → OpenVINO,
    a Paddle static model → Paddle Inference."""
    recorded = read_candidate_settings(model_path)
    backend = backend or default_backend(model_path)
    if precision == "auto" and recorded.get("backend") == backend:
        precision = recorded.get("precision", "auto")
    if backend not in BACKENDS:
        raise UserError(f"backend '{backend}' is not supported (choose one of: {', '.join(BACKENDS)})")
    if backend == "openvino":
        if device != "cpu" or tensorrt is not None:
            raise UserError("the OpenVINO backend here runs on CPU only")
        return OpenVinoBackend(model_path, precision, num_threads, model_prefix)
    if backend == "onnxruntime" or model_path.endswith(".onnx"):
        if device != "cpu" or tensorrt is not None:
            raise UserError("the ONNX Runtime backend here runs on CPU only")
        if os.path.isdir(model_path):  # a candidate directory: its recorded file, else model.onnx
            model_path = os.path.join(model_path, recorded.get("model_file", ONNX_FILE))
        ort = OnnxRuntimeBackend(model_path, num_threads)
        if precision not in ("auto", ort.precision):
            raise UserError(f"{model_path} is a {ort.precision} ONNX model; precision {precision} does not apply")
        return ort
    return PaddleBackend(model_path, device, precision, num_threads, tensorrt, model_prefix)


__all__ = [
    "BACKENDS", "BF16_CPU_FLAGS", "PRECISIONS", "TENSORRT_PRECISIONS", "CANDIDATE_FILE", "OPENVINO_IR_FILE",
    "ONEDNN_INT8_OPS", "QUANT_OPS", "Backend", "PaddleBackend", "OnnxRuntimeBackend", "OpenVinoBackend",
    "TensorRTOptions", "apply_tensorrt", "check_bf16_supported", "cpu_has_native_bf16", "create_backend",
    "default_backend", "find_openvino_model", "find_static_model", "is_quantized_model", "is_quantized_onnx",
    "is_quantized_openvino", "model_size_mb", "paddle_error_summary", "read_candidate_settings", "read_openvino_model",
]  # fmt: skip
