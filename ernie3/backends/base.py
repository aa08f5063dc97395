"""What every inference backend shares: the `Backend` protocol the Predictor relies on, precisions, and how a model
path says which engine and precision run it (a compress candidate's candidate.json, else the file type)."""
from __future__ import annotations

import functools
import os
from typing import Optional, Protocol, runtime_checkable

import numpy as np

from ernie3.errors import UserError
from ernie3.layout import OPENVINO_IR_FILE, QUANTIZED_PREFIX, STATIC_MODEL_PREFIX
from ernie3.model_files import first_line, read_candidate_settings  # noqa: F401  (part of this module's API)

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("paddle", "onnxruntime", "openvino")
# CPU flags that mean native BF16 arithmetic (AVX512-BF16 on Cooper Lake / Zen 4 and later, AMX on Sapphire Rapids)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@runtime_checkable
class Backend(Protocol):
    """What the Predictor needs from an inference engine."""

    name: str
    model_file: str
    device: str
    precision: str
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One batch of padded int64 feature arrays (by input name) → the model's outputs, in output order."""


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in BF16 natively (else BF16 is emulated, slower than FP32, so it is refused)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = {flag for line in handle if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def check_bf16_supported() -> None:
    if not cpu_has_native_bf16():
        raise UserError(
            "precision bf16 needs a CPU with native BF16 (avx512_bf16 or amx_bf16 in /proc/cpuinfo); "
            "this one has neither: use fp32, or int8 with a compressed model"
        )


def default_backend(model_path: str) -> str:
    """The backend a model runs on when none is asked for: its candidate record, else by file type."""
    recorded = read_candidate_settings(model_path).get("backend")
    if recorded:
        return recorded
    if model_path.endswith(".onnx"):
        return "onnxruntime"
    if model_path.endswith(".xml") or (os.path.isdir(model_path) and os.path.isfile(os.path.join(model_path, OPENVINO_IR_FILE))
                                       and not os.path.isfile(os.path.join(model_path, "model.pdmodel"))):  # fmt: skip
        return "openvino"
    return "paddle"


def find_static_model(model_path: str, prefix: Optional[str] = None) -> tuple[str, str]:
    """(program file, params file) of a static model given its directory (+ prefix) or its program file."""
    if os.path.isfile(model_path) and model_path.endswith((".pdmodel", ".json")):
        params = os.path.splitext(model_path)[0] + ".pdiparams"
        if not os.path.isfile(params):
            raise UserError(f"{model_path} has no parameters file {params}")
        return model_path, params
    if not os.path.isdir(model_path):
        raise UserError(f"model path not found: {model_path}")
    prefixes = [prefix] if prefix else [STATIC_MODEL_PREFIX, QUANTIZED_PREFIX]
    for name in prefixes:
        for suffix in (".pdmodel", ".json"):
            program = os.path.join(model_path, name + suffix)
            params = os.path.join(model_path, name + ".pdiparams")
            if os.path.isfile(program) and os.path.isfile(params):
                return program, params
    shown = " or ".join(f"{p}.pdmodel + {p}.pdiparams" for p in prefixes)
    raise UserError(f"{model_path} holds no static model ({shown})")


def model_size_mb(model_path: str, prefix: Optional[str] = None) -> float:
    """Size on disk of a model: an .onnx file, an OpenVINO IR (.xml + .bin), or a static model's program + params."""
    if model_path.endswith(".onnx"):
        return os.path.getsize(model_path) / 2**20
    if model_path.endswith(".xml") or (prefix or "").endswith(".xml"):
        xml = model_path if model_path.endswith(".xml") else os.path.join(model_path, prefix)
        return sum(os.path.getsize(f) for f in (xml, os.path.splitext(xml)[0] + ".bin")) / 2**20
    return sum(os.path.getsize(f) for f in find_static_model(model_path, prefix)) / 2**20
