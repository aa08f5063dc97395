"""Inference backends: one padded batch of int64 features in, the model's raw outputs out.

Pre- and post-processing live in the task definitions; the Predictor (ernie3/predict.py) joins the two.
One module per engine behind the `Backend` protocol (base.py): Paddle Inference (CPU oneDNN FP32/BF16/INT8,
GPU/TensorRT), ONNX Runtime (CPU), OpenVINO (CPU FP32/BF16, INT8 from NNCF).
"""
from __future__ import annotations

import json
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
from ernie3.layout import CANDIDATE_FILE, ONNX_FILE, OPENVINO_IR_FILE, REPORT_JSON, enclosing_compress_output


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
            raise UserError(f"the OpenVINO backend here runs on CPU only; {gpu_model_hint(model_path)}")
        return OpenVinoBackend(model_path, precision, num_threads, model_prefix)
    if backend == "onnxruntime" or model_path.endswith(".onnx"):
        if device != "cpu" or tensorrt is not None:
            raise UserError(f"the ONNX Runtime backend here runs on CPU only; {gpu_model_hint(model_path)}")
        if os.path.isdir(model_path):  # a candidate directory: its recorded file, else model.onnx
            model_path = os.path.join(model_path, recorded.get("model_file", ONNX_FILE))
            if not os.path.isfile(model_path):
                raise UserError(f"ONNX model not found: {model_path}; {export_onnx_hint(os.path.dirname(model_path))}")
        ort = OnnxRuntimeBackend(model_path, num_threads)
        if precision not in ("auto", ort.precision):
            raise UserError(f"{model_path} is a {ort.precision} ONNX model; precision {precision} does not apply")
        return ort
    return PaddleBackend(model_path, device, precision, num_threads, tensorrt, model_prefix)


def export_onnx_hint(model_dir: str) -> str:
    """How to make the model.onnx an ONNX Runtime run of a Paddle model directory needs."""
    if not os.path.isfile(os.path.join(model_dir, "model.pdmodel")):
        return "run it on its own backend (drop --backend), or pass an .onnx file"
    return (f"export it first: `python deploy/paddle2onnx/export_onnx.py --model_path {model_dir}` "
            f"(or `ernie3 export-onnx --model_path {model_dir}`; add --quantize for an INT8 copy)")


def task_higher_is_better(task_name: object) -> bool:
    from ernie3.tasks import get_task  # the task registry imports paddlenlp: only when a hint is needed

    try:
        return get_task(str(task_name)).higher_is_better
    except Exception:  # an unknown task (a plugin not loaded here): the usual direction
        return True


def gpu_model_hint(model_path: str) -> str:
    """Which models run on GPU instead of a CPU-only candidate: the Paddle candidates of the same compress output
    (its report.json), best Paddle INT8 first (TensorRT INT8 needs a quantized model), then the float model."""
    output = enclosing_compress_output(model_path)
    paddle, higher = [], True
    if output is not None:
        try:
            with open(os.path.join(output, REPORT_JSON), encoding="utf-8") as handle:
                report = json.load(handle)
            rows = report.get("candidates", [])
            higher = task_higher_is_better(report.get("task"))
            paddle = [r for r in rows if isinstance(r, dict) and r.get("backend", "paddle") == "paddle"
                      and r.get("precision") in ("int8", "fp32", "auto") and isinstance(r.get("name"), str)
                      and isinstance(r.get("metric"), (int, float))]  # fmt: skip
        except (OSError, ValueError, AttributeError):
            paddle = []  # a damaged report only costs the hint its names
    if not paddle:
        return ("on GPU use a Paddle model (an export dir, or a Paddle candidate of a compress output dir: "
                "see its report.md)")
    ranked = sorted(paddle, key=lambda r: -r["metric"] if higher else r["metric"])
    int8 = [r for r in ranked if r.get("precision") == "int8"]
    floats = [r for r in ranked if r.get("precision") != "int8"]
    shown = ([f"{os.path.join(output, int8[0]['name'])} (Paddle INT8, best {int8[0]['metric']:.4f}: "
              f"--use_trt --precision int8)"] if int8 else [])
    shown += [f"{os.path.join(output, floats[0]['name'])} (Paddle float: --use_trt --precision fp16 or fp32)"] if floats else []
    return f"on GPU use a Paddle candidate of {output}: " + "; ".join(shown)


__all__ = [
    "BACKENDS", "BF16_CPU_FLAGS", "PRECISIONS", "TENSORRT_PRECISIONS", "CANDIDATE_FILE", "OPENVINO_IR_FILE",
    "ONEDNN_INT8_OPS", "QUANT_OPS", "Backend", "PaddleBackend", "OnnxRuntimeBackend", "OpenVinoBackend",
    "TensorRTOptions", "apply_tensorrt", "check_bf16_supported", "cpu_has_native_bf16", "create_backend",
    "default_backend", "find_openvino_model", "find_static_model", "is_quantized_model", "is_quantized_onnx",
    "is_quantized_openvino", "model_size_mb", "paddle_error_summary", "read_candidate_settings", "read_openvino_model",
]  # fmt: skip
