"""Paddle Inference: CPU (oneDNN FP32/BF16/INT8) and GPU (FP32/FP16, TensorRT FP32/FP16/INT8 with dynamic shape)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ernie3.errors import UserError
from ernie3.model_files import read_paddle_program
from ernie3.backends import base
from ernie3.backends.base import PRECISIONS, TENSORRT_PRECISIONS, find_static_model

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


def is_quantized_model(program_file: str) -> bool:
    """Whether a static program was quantized, read from its ops rather than from its file name."""
    if program_file.endswith(".json"):  # PIR program: op names appear verbatim
        with open(program_file, "rb") as handle:
            content = handle.read()
        return any(f'"{op}"'.encode() in content or f".{op}".encode() in content for op in QUANT_OPS)
    desc = read_paddle_program(program_file)
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
                base.check_bf16_supported()
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
