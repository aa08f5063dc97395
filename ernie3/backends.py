"""Inference backends: one padded batch of int64 features in, the model's raw outputs out.

Pre- and post-processing live in the task definitions; the Predictor (ernie3/predict.py) joins the two.
Engines: Paddle Inference (CPU oneDNN FP32/BF16/INT8, GPU/TensorRT), ONNX Runtime (CPU), OpenVINO (CPU FP32/BF16,
INT8 from NNCF).
"""
from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from ernie3.errors import UserError

# Ops only a quantized program holds (the new "ONNX" quant format and the older fake-quant format).
QUANT_OPS = {
    "quantize_linear", "dequantize_linear", "fake_quantize_abs_max", "fake_quantize_range_abs_max",
    "fake_quantize_moving_average_abs_max", "fake_channel_wise_quantize_abs_max",
    "fake_quantize_dequantize_moving_average_abs_max", "fake_channel_wise_quantize_dequantize_abs_max",
    "fake_dequantize_max_abs", "fake_channel_wise_dequantize_max_abs",
}  # fmt: skip
# Ops oneDNN runs in INT8: PaddleNLP's deploy choice, which keeps argmax agreement with FP32 near 100%
# (with every op quantized, agreement drops to 86-98% and logits drift by up to ~4).
ONEDNN_INT8_OPS = {"fc", "reshape2", "transpose2", "slice"}
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("paddle", "onnxruntime", "openvino")
#: written into a compress candidate directory: which backend and precision run it (read by `create_backend`)
CANDIDATE_FILE = "candidate.json"
OPENVINO_IR_FILE = "model.xml"  # + model.bin: OpenVINO's own format, what NNCF INT8 models are saved as
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


def read_candidate_settings(model_path: str) -> dict:
    """backend/precision recorded by compress in a candidate directory (e.g. best/), or {} for a plain model."""
    directory = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    path = os.path.join(directory, CANDIDATE_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc})") from None
    return {key: settings[key] for key in ("backend", "precision", "model_file") if settings.get(key)}


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
    prefixes = [prefix] if prefix else ["model", "int8"]
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


def is_quantized_model(program_file: str) -> bool:
    """Whether a static program was quantized, read from its ops rather than from its file name."""
    with open(program_file, "rb") as handle:
        content = handle.read()
    if program_file.endswith(".json"):  # PIR program: op names appear verbatim
        return any(f'"{op}"'.encode() in content or f".{op}".encode() in content for op in QUANT_OPS)
    from paddle.base import core

    try:
        desc = core.ProgramDesc(content)
    except Exception:
        raise UserError(f"{program_file} is not a Paddle static program") from None
    op_types = {desc.block(b).op(o).type() for b in range(desc.num_blocks()) for o in range(desc.block(b).op_size())}
    return bool(op_types & QUANT_OPS)


def paddle_error_summary(exc: BaseException) -> str:
    """The one informative line of a Paddle C++ error report (its `[Hint: ...]` or first non-empty line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    hint = next((line for line in lines if line.startswith("[Hint:")), None)
    summary = hint or (lines[0] if lines else type(exc).__name__)
    return re.sub(r"\s*\(at /paddle/[^)]*\)", "", summary)[:200]  # the C++ source location helps nobody here


@dataclass
class TensorRTOptions:
    """TensorRT settings for Paddle Inference on GPU; shapes are [batch, sequence] per input."""

    precision: str = "fp16"
    workspace_size: int = 1 << 30
    max_batch_size: int = 32
    min_subgraph_size: int = 5
    min_shape: Sequence[int] = (1, 1)
    opt_shape: Sequence[int] = (32, 128)
    max_shape: Sequence[int] = (32, 512)
    #: a shape-range file collected by a first run (`collect_shapes`), instead of min/opt/max
    shape_file: Optional[str] = None
    collect_shapes: bool = False
    input_names: Sequence[str] = field(default_factory=lambda: ("input_ids", "token_type_ids"))

    def validate(self) -> None:
        if self.precision not in TENSORRT_PRECISIONS:
            raise UserError(f"TensorRT precision '{self.precision}' is not one of {', '.join(TENSORRT_PRECISIONS)}")
        if self.workspace_size <= 0 or self.max_batch_size <= 0:
            raise UserError("TensorRT workspace size and max batch size must be positive")
        shapes = (self.min_shape, self.opt_shape, self.max_shape)
        if any(len(shape) != 2 or min(shape) < 1 for shape in shapes):
            raise UserError("TensorRT dynamic shapes are [batch, sequence] pairs of positive numbers")
        if not all(lo <= mid <= hi for lo, mid, hi in zip(*shapes)):
            raise UserError(f"TensorRT shapes must satisfy min <= opt <= max, got {list(map(list, shapes))}")
        if self.shape_file and not self.collect_shapes and not os.path.isfile(self.shape_file):
            raise UserError(f"TensorRT shape file not found: {self.shape_file} (collect it with collect_shapes first)")

    def dynamic_shapes(self) -> tuple[dict, dict, dict]:
        """(min, max, opt) shape dicts in the order Paddle's `set_trt_dynamic_shape_info` takes them."""
        def per_input(shape):
            return {name: list(shape) for name in self.input_names}

        return per_input(self.min_shape), per_input(self.max_shape), per_input(self.opt_shape)


def apply_tensorrt(config, options: TensorRTOptions, quantized: bool, gpu_memory_mb: int = 100, device_id: int = 0):
    """Turn on GPU + TensorRT on a paddle.inference.Config, after checking this paddle build can do it."""
    import paddle
    import paddle.inference as paddle_infer

    options.validate()
    if options.precision == "int8" and not quantized:
        raise UserError("TensorRT INT8 needs a quantized model (from the compress scripts); this one is float")
    if not paddle.is_compiled_with_cuda():
        raise UserError("TensorRT needs a GPU build of paddle (paddlepaddle-gpu with TensorRT); this one is CPU-only")
    precision_mode = {
        "fp32": paddle_infer.PrecisionType.Float32,
        "fp16": paddle_infer.PrecisionType.Half,
        "int8": paddle_infer.PrecisionType.Int8,
    }[options.precision]
    config.enable_use_gpu(gpu_memory_mb, device_id)
    if options.collect_shapes:
        # a first, non-TensorRT run that records the shape range of every tensor for the later TensorRT runs
        config.collect_shape_range_info(options.shape_file)
        return config
    config.enable_tensorrt_engine(
        workspace_size=options.workspace_size,
        max_batch_size=options.max_batch_size,
        min_subgraph_size=options.min_subgraph_size,
        precision_mode=precision_mode,
        use_static=False,
        use_calib_mode=False,  # INT8 scales come from the quantized model, not from TensorRT calibration
    )
    if options.shape_file:
        config.enable_tuned_tensorrt_dynamic_shape(options.shape_file, True)
    else:
        config.set_trt_dynamic_shape_info(*options.dynamic_shapes())
    return config


class PaddleBackend:
    """Paddle Inference: CPU with oneDNN (FP32, BF16 on CPUs with native BF16, or INT8 for quantized models), or GPU
    with optional TensorRT."""

    name = "paddle"

    def __init__(
        self,
        model_path: str,
        device: str = "cpu",
        precision: str = "auto",
        num_threads: int = 1,
        tensorrt: Optional[TensorRTOptions] = None,
        model_prefix: Optional[str] = None,
    ):
        import paddle.inference as paddle_infer

        program, params = find_static_model(model_path, model_prefix)
        self.model_file = program
        quantized = is_quantized_model(program)
        if precision == "auto":
            precision = "int8" if quantized else "fp32"
        if precision not in PRECISIONS:
            raise UserError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
        if precision == "int8" and not quantized:
            raise UserError(f"{program} is not a quantized model: INT8 needs a model from the compress scripts")
        if precision == "bf16" and device != "cpu":
            raise UserError("bf16 runs on CPU here (oneDNN); on GPU use fp16 through TensorRT")
        if quantized and precision != "int8":
            raise UserError(f"{program} is quantized: run it with precision int8")
        config = paddle_infer.Config(program, params)
        if device == "gpu":
            if tensorrt is None:
                if precision != "fp32":
                    raise UserError(f"{precision} on GPU runs through TensorRT: add --use_trt")
                import paddle

                if not paddle.is_compiled_with_cuda():
                    raise UserError("device gpu needs a GPU build of paddle (paddlepaddle-gpu); this one is CPU-only")
                config.enable_use_gpu(100, 0)
            else:
                tensorrt.precision = precision
                apply_tensorrt(config, tensorrt, quantized)
        elif device == "cpu":
            if tensorrt is not None:
                raise UserError("TensorRT runs on GPU only: use --device gpu")
            if precision == "fp16":
                raise UserError("fp16 is not supported on CPU (choose fp32, or int8 for a quantized model)")
            if precision == "bf16":
                check_bf16_supported()
            config.disable_gpu()
            config.enable_mkldnn()
            if precision == "int8":
                config.enable_mkldnn_int8(ONEDNN_INT8_OPS)
            elif precision == "bf16":
                # the float export as is: oneDNN runs its matmuls/fc in BF16 (2x FP32 here, argmax = FP32)
                config.enable_mkldnn_bfloat16()
            config.set_cpu_math_library_num_threads(num_threads)
        else:
            raise UserError(f"device '{device}' is not supported (choose cpu or gpu)")
        if program.endswith(".pdmodel"):  # memory_optimize_pass breaks on PIR .json programs
            config.enable_memory_optim()
        config.disable_glog_info()
        config.switch_ir_optim(True)
        self.device, self.precision = device, precision
        from ernie3.logs import native_output_captured

        try:
            with native_output_captured("Paddle Inference"):  # its IR passes print dozens of lines per load
                self.predictor = paddle_infer.create_predictor(config)
        except Exception as exc:  # paddle raises ValueError/RuntimeError/OSError with a multi-line C++ report
            raise UserError(
                f"Paddle Inference could not load {program} + {os.path.basename(params)}: the files are damaged, "
                f"truncated or of different models ({paddle_error_summary(exc)})"
            ) from None
        self.input_names = list(self.predictor.get_input_names())
        self.output_names = list(self.predictor.get_output_names())

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name in self.input_names:
            self.predictor.get_input_handle(name).copy_from_cpu(np.ascontiguousarray(inputs[name], dtype=np.int64))
        self.predictor.run()
        return [self.predictor.get_output_handle(name).copy_to_cpu() for name in self.output_names]


class OnnxRuntimeBackend:
    """ONNX Runtime on CPU for models exported with paddle2onnx (FP32, or dynamically quantized INT8)."""

    name = "onnxruntime"

    def __init__(self, onnx_file: str, num_threads: int = 1):
        import onnxruntime

        if not os.path.isfile(onnx_file):
            raise UserError(f"ONNX model not found: {onnx_file}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph exceptions
            raise UserError(f"{onnx_file} is not a loadable ONNX model ({str(exc).splitlines()[0][:160]})") from None
        self.model_file = onnx_file
        self.device = "cpu"
        self.precision = "int8" if is_quantized_onnx(onnx_file) else "fp32"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.int64) for name in self.input_names}
        return self.session.run(self.output_names, feed)


def is_quantized_onnx(onnx_file: str) -> bool:
    import onnx

    graph = onnx.load(onnx_file, load_external_data=False).graph
    return any(node.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul", "DequantizeLinear")
               for node in graph.node)  # fmt: skip


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
            check_bf16_supported()
        # the CPU plugin defaults to BF16 wherever the CPU has it: FP32 must be asked for; INT8 models keep their
        # other ops in BF16 when the CPU has it natively (the measured fast path), else FP32
        hint = "bf16" if precision == "bf16" or (precision == "int8" and cpu_has_native_bf16()) else "f32"
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
    names += [OPENVINO_IR_FILE, "model.onnx", f"{model_prefix or 'model'}.pdmodel", "int8.pdmodel"]
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
    if not model_file.endswith(".pdmodel"):
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


def first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip() and "Exception from" not in line]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def is_quantized_openvino(model) -> bool:
    """Whether an ov.Model holds INT8 quantization (NNCF inserts FakeQuantize before quantized ops)."""
    return any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops())


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
            model_path = os.path.join(model_path, recorded.get("model_file", "model.onnx"))
        ort = OnnxRuntimeBackend(model_path, num_threads)
        if precision not in ("auto", ort.precision):
            raise UserError(f"{model_path} is a {ort.precision} ONNX model; precision {precision} does not apply")
        return ort
    return PaddleBackend(model_path, device, precision, num_threads, tensorrt, model_prefix)
