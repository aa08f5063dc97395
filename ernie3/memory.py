"""Memory of long-running predictors: the shape buckets that bound it, the expected peak RSS, and RSS sampling.

Where the memory goes (measured on the ERNIE 3.0 medium shape, Paddle Inference oneDNN, see deploy/serving/README.md):
oneDNN keeps per-input-shape state (primitives, reordered weights, scratchpads) and Paddle's allocator keeps every
chunk it ever handed out, so RSS grows with the number of *distinct* input shapes a process meets, not with traffic.
The Predictor therefore pads every batch to one of a few fixed shapes (`ShapeBuckets`): the process then reaches
its steady RSS after one pass over those shapes, and that RSS is set by the configuration (largest batch and
sequence length, number of buckets), which `estimate_peak_rss_mb` states before a model is loaded.
"""
from __future__ import annotations

import bisect
import collections
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ernie3.errors import UserError

#: sequence-length buckets (before capping at max_seq_length): powers of two from 32. Chosen from the measured
#: trade-off in deploy/serving/README.md: every further bucket costs resident memory for the process's lifetime,
#: while doubling steps keep the expected padding of uniformly distributed lengths near 1/3 (and ≤ 2× worst case).
SEQUENCE_BUCKETS = (32, 64, 128, 256, 512)
#: batch-size buckets (before capping at the predictor's batch size): powers of two
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class ShapeBuckets:
    """The only (batch, sequence) shapes a Predictor runs: each batch is padded up to the next bucket of each."""

    batch_sizes: tuple[int, ...]
    seq_lengths: tuple[int, ...]

    def __post_init__(self) -> None:
        for name, values in (("batch_sizes", self.batch_sizes), ("seq_lengths", self.seq_lengths)):
            if not values or list(values) != sorted(set(values)) or values[0] < 1:
                raise UserError(f"shape buckets: {name} must be increasing positive numbers, got {list(values)}")

    @classmethod
    def for_limits(cls, max_batch_size: int, max_seq_length: int,
                   batch_buckets: Sequence[int] = BATCH_BUCKETS,
                   seq_buckets: Sequence[int] = SEQUENCE_BUCKETS) -> "ShapeBuckets":
        """The default buckets below the limits, plus the limits themselves (the largest shape is the limit)."""
        if max_batch_size < 1 or max_seq_length < 3:
            raise UserError(f"shape buckets need max batch size >= 1 and max sequence length >= 3 "
                            f"(got {max_batch_size}, {max_seq_length})")  # fmt: skip
        batches = sorted({b for b in batch_buckets if b < max_batch_size} | {max_batch_size})
        lengths = sorted({s for s in seq_buckets if s < max_seq_length} | {max_seq_length})
        return cls(tuple(batches), tuple(lengths))

    @property
    def max_batch_size(self) -> int:
        return self.batch_sizes[-1]

    @property
    def max_seq_length(self) -> int:
        return self.seq_lengths[-1]

    def batch_size(self, rows: int) -> int:
        """The bucket a batch of `rows` rows is padded to."""
        return self._bucket(self.batch_sizes, rows, "batch size")

    def seq_length(self, length: int) -> int:
        """The bucket a batch whose longest row has `length` tokens is padded to."""
        return self._bucket(self.seq_lengths, length, "sequence length")

    @staticmethod
    def _bucket(buckets: tuple[int, ...], value: int, what: str) -> int:
        position = bisect.bisect_left(buckets, value)
        if position == len(buckets):
            raise ValueError(f"{what} {value} is above the largest bucket {buckets[-1]}")
        return buckets[position]

    def shapes(self) -> list[tuple[int, int]]:
        """Every (batch, sequence) shape the predictor can run, smallest first."""
        return [(b, s) for b in self.batch_sizes for s in self.seq_lengths]

    def describe(self) -> dict:
        return {"batch_sizes": list(self.batch_sizes), "seq_lengths": list(self.seq_lengths),
                "shapes": len(self.batch_sizes) * len(self.seq_lengths)}  # fmt: skip


# -- expected peak RSS -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDims:
    """What the memory estimate needs to know about a model, read from its files."""

    parameter_mb: float  # parameters as stored (FP32, or the INT8 program's parameter file)
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int


def _dims_from_shapes(shapes: Sequence[Sequence[int]], heads: Optional[int], parameter_mb: float) -> ModelDims:
    """Transformer sizes from the shapes of a model's 2-D weights: the embedding table is [vocab, hidden], each
    layer has one [hidden, intermediate] weight."""
    matrices = [tuple(s) for s in shapes if len(s) == 2 and min(s) > 0]
    if not matrices:
        raise UserError("cannot read the model's weight shapes for the memory estimate")
    # the hidden size is the most frequent dimension (q, k, v, out, pooler and every embedding table have it), not
    # the second dimension of the largest matrix: a trimmed vocabulary (--prune_vocab) makes an FFN weight largest
    dims = collections.Counter(d for s in matrices for d in s)
    hidden = max(dims, key=lambda d: (dims[d], d))
    wide = [s[1] for s in matrices if s[0] == hidden and s[1] > hidden]
    intermediate = max(wide) if wide else 4 * hidden
    layers = sum(1 for s in matrices if s == (hidden, intermediate)) or 1
    # ERNIE 3.0 sizes have 12 heads, except xbase (16); head count only scales the attention-score term
    return ModelDims(parameter_mb, hidden, intermediate, layers, heads or max(1, hidden // 64))


def model_dims(model_file: str, params_file: Optional[str] = None) -> ModelDims:
    """Sizes of a Paddle static program (.pdmodel), an ONNX model or an OpenVINO IR, for `estimate_peak_rss_mb`."""
    from ernie3.model_files import load_onnx, read_openvino_ir, read_paddle_program

    if model_file.endswith(".xml"):  # OpenVINO IR (NNCF candidates): weights are its Constant ops
        model = read_openvino_ir(model_file)
        shapes = [list(op.get_output_shape(0)) for op in model.get_ops() if op.get_type_name() == "Constant"]
        return _dims_from_shapes(shapes, None, os.path.getsize(os.path.splitext(model_file)[0] + ".bin") / 2**20)
    if model_file.endswith(".onnx"):
        from onnx import numpy_helper

        graph = load_onnx(model_file).graph
        shapes = [list(t.dims) for t in graph.initializer]
        for node in graph.node:  # paddle2onnx keeps some weights in Constant nodes
            if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims:
                shapes.append(list(node.attribute[0].t.dims))
        heads = None
        for node in graph.node:  # [batch, seq, heads, head_dim] reshape targets name the head count
            if node.op_type == "Constant" and node.attribute and list(node.attribute[0].t.dims) == [4]:
                value = numpy_helper.to_array(node.attribute[0].t).tolist()
                if value[:2] == [0, 0] and value[2] > 0:
                    heads = int(value[2])
                    break
        return _dims_from_shapes(shapes, heads, os.path.getsize(model_file) / 2**20)
    from paddle.base import core

    desc = read_paddle_program(model_file)
    block = desc.block(0)
    shapes = [var.shape() for var in block.all_vars() if var.persistable() and var.type() == core.VarDesc.VarType.LOD_TENSOR]
    heads = None
    for index in range(block.op_size()):
        op = block.op(index)
        if op.type() == "reshape2" and op.has_attr("shape"):
            target = list(op.attr("shape"))
            if len(target) == 4 and target[:2] == [0, 0] and target[2] > 0:
                heads = int(target[2])
                break
    params_file = params_file or os.path.splitext(model_file)[0] + ".pdiparams"
    return _dims_from_shapes(shapes, heads, os.path.getsize(params_file) / 2**20)


@dataclass(frozen=True)
class MemoryModel:
    """Coefficients of one backend's peak-RSS estimate, calibrated on soak measurements (ernie3/cli/soak.py; ERNIE 3.0
    medium and a tiny model, one thread): runtime + loaded weights + per-shape state + activations of the largest
    shape. Paddle oneDNN keeps, for each input shape it runs, its own reordered copy of the encoder's FC weights
    (measured: +165 MB per shape for the medium model in FP32, whatever the shape's size), except for the
    smallest shapes, which run without it."""

    runtime_mb: float  # the process with paddle, paddlenlp and a tokenizer loaded, before any weights
    weight_copies: float  # resident copies of the parameter file once loaded (file + backend's prepared weights)
    #: per shape: bytes per encoder FC weight the backend keeps for each distinct input shape it ran
    per_shape_bytes_per_weight: float
    #: shapes of fewer tokens than this, with fewer than 4 rows, keep only a little per-shape state
    small_shape_tokens: int
    small_shape_mb: float
    #: activation buffers of the largest shape: bytes per token per (hidden + intermediate) unit
    activation_bytes_per_token_unit: float


MEMORY_MODELS = {
    ("paddle", "fp32"): MemoryModel(runtime_mb=585.0, weight_copies=1.0, per_shape_bytes_per_weight=4.0,
                                    small_shape_tokens=256, small_shape_mb=15.0, activation_bytes_per_token_unit=13.0),
    # the quantized program also keeps float parameters; INT8 kernels keep an int8 weight copy per shape
    ("paddle", "int8"): MemoryModel(runtime_mb=585.0, weight_copies=2.3, per_shape_bytes_per_weight=1.0,
                                    small_shape_tokens=256, small_shape_mb=3.0, activation_bytes_per_token_unit=4.0),
    # ONNX Runtime keeps no per-shape state: its arena grows to the largest shape's activations (INT8: not
    # measured, the FP32 coefficients)
    ("onnxruntime", "fp32"): MemoryModel(runtime_mb=585.0, weight_copies=1.47, per_shape_bytes_per_weight=0.0,
                                         small_shape_tokens=0, small_shape_mb=0.0, activation_bytes_per_token_unit=17.0),
    ("onnxruntime", "int8"): MemoryModel(runtime_mb=585.0, weight_copies=1.47, per_shape_bytes_per_weight=0.0,
                                         small_shape_tokens=0, small_shape_mb=0.0, activation_bytes_per_token_unit=17.0),
}  # fmt: skip


#: the runtime of a process that runs an OpenVINO / ONNX Runtime model with the standalone tokenizer, without paddle
#: and paddlenlp (measured: 94 MB with ernie3.predict, openvino, onnxruntime and tokenizers loaded and the tokenizer
#: built), in place of MemoryModel.runtime_mb
PADDLE_FREE_RUNTIME_MB = 100.0
#: what the HTTP service adds to a paddle-free process (fastapi, uvicorn, pydantic, the worker threads; measured:
#: 173 MB peak serving a tiny OpenVINO model vs 141 MB for its bare warmed-up Predictor)
SERVICE_RUNTIME_MB = 40.0


def memory_model(backend: str, precision: str) -> MemoryModel:
    """The calibrated coefficients of a backend (other backends and precisions: Paddle's, the most memory-hungry)."""
    return MEMORY_MODELS.get((backend, precision), MEMORY_MODELS.get((backend, "fp32"), MEMORY_MODELS[("paddle", "fp32")]))


def estimate_peak_rss_mb(dims: ModelDims, buckets: ShapeBuckets, backend: str, precision: str = "fp32",
                         include_runtime: bool = True, paddle_free: bool = False) -> float:
    """Expected peak RSS (MB) of a process serving one model through `buckets`: what it holds once it has run
    every bucket shape. `include_runtime=False` gives the model's share alone (for summing several models);
    `paddle_free`: the process loads neither paddle nor paddlenlp (PADDLE_FREE_RUNTIME_MB)."""
    model = memory_model(backend, precision)
    hidden, intermediate, layers = dims.hidden_size, dims.intermediate_size, dims.num_layers
    largest_tokens = buckets.max_batch_size * buckets.max_seq_length
    activations = model.activation_bytes_per_token_unit * largest_tokens * (hidden + intermediate)
    attention = 4.0 * largest_tokens * buckets.max_seq_length * dims.num_heads * 2  # scores + softmax, FP32
    fc_weights = layers * (4 * hidden * hidden + 2 * hidden * intermediate)  # q, k, v, out; two FFN matrices
    per_shape_mb = 0.0
    for batch, length in buckets.shapes():
        small = batch < 4 and batch * length < model.small_shape_tokens
        per_shape_mb += model.small_shape_mb if small else model.per_shape_bytes_per_weight * fc_weights / 2**20
    total = model.weight_copies * dims.parameter_mb + per_shape_mb + (activations + attention) / 2**20
    runtime = PADDLE_FREE_RUNTIME_MB if paddle_free else model.runtime_mb
    return total + (runtime if include_runtime else 0.0)


# -- RSS -----------------------------------------------------------------------------------------------------------


def rss_mb(pid: Optional[int] = None) -> float:
    """Resident set size of a process (this one by default), in MB."""
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


@dataclass
class RssSampler:
    """Samples a process's RSS every `interval_s` seconds on a background thread: `with RssSampler() as s: ...`."""

    pid: Optional[int] = None
    interval_s: float = 0.5
    samples: list = field(default_factory=list)  # (seconds since start, RSS MB)
    marks: dict = field(default_factory=dict)  # name → seconds since start (e.g. "warmed_up")

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> "RssSampler":
        self._started = time.monotonic()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def sample(self) -> float:
        value = rss_mb(self.pid)
        self.samples.append((round(self.elapsed(), 3), round(value, 1)))
        return value

    def mark(self, name: str) -> None:
        """Records an event (and an RSS sample at it), e.g. the end of the warm-up pass."""
        self.marks[name] = round(self.elapsed(), 3)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 (the sampled process ended: nothing more to record)
                return

    def summary(self, warm_mark: str = "warmed_up") -> dict:
        """start, after warm-up, peak, end, and growth over the last half of the run (relative, end vs. the
        RSS at the midpoint between warm-up and end)."""
        return summarize_rss(self.samples, self.marks.get(warm_mark))


def summarize_rss(samples: Sequence[tuple[float, float]], warm_at: Optional[float]) -> dict:
    if not samples:
        return {}
    start, end = samples[0][1], samples[-1][1]
    warm_at = warm_at if warm_at is not None else samples[0][0]
    after_warm = [v for t, v in samples if t >= warm_at]
    warm = after_warm[0] if after_warm else start
    half = warm_at + (samples[-1][0] - warm_at) / 2
    second_half = [v for t, v in samples if t >= half]
    mid = second_half[0] if second_half else end
    peak = max(v for _, v in samples)
    return {
        "start_mb": start,
        "after_warmup_mb": warm,
        "peak_mb": peak,
        "end_mb": end,
        "peak_over_warm": round(peak / warm, 3) if warm else None,
        "growth_last_half": round(max(second_half) / mid - 1, 4) if second_half and mid else 0.0,
    }


def release_free_memory() -> None:
    """Hands memory the C allocators hold but no longer use back to the OS (glibc `malloc_trim`); a no-op where
    glibc is absent. Cheap enough to call after a batch of an unusual shape."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        return


# -- a budget for a process serving several models -----------------------------------------------------------------


def plan_model(path: str, options: dict) -> dict:
    """The buckets and expected RSS share of a model as a Predictor with `options` would run it, from its files
    alone (nothing is loaded): what a service checks against its memory budget before it starts."""
    import inspect

    from ernie3 import backends
    from ernie3.layout import ONNX_FILE, resolve_model_path
    from ernie3.model_files import read_task_info
    from ernie3.predict import Predictor

    defaults = {name: p.default for name, p in inspect.signature(Predictor.__init__).parameters.items()}
    path = resolve_model_path(path)  # a compress output dir means its best/, as for infer.py and serving
    model_dir = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    max_seq_length = options.get("max_seq_length") or read_task_info(model_dir)["max_seq_length"]
    buckets = ShapeBuckets.for_limits(options.get("batch_size", defaults["batch_size"]), max_seq_length)
    backend = options.get("backend") or backends.default_backend(path)  # as the Predictor picks it
    if backend == "onnxruntime":
        recorded_file = backends.read_candidate_settings(path).get("model_file", ONNX_FILE)
        model_file = os.path.join(path, recorded_file) if os.path.isdir(path) else path
        precision = "int8" if backends.is_quantized_onnx(model_file) else "fp32"
    elif backend == "openvino":
        model_file = backends.find_openvino_model(path, options.get("model_prefix"))
        precision = options.get("precision") or backends.read_candidate_settings(path).get("precision") or "bf16"
    else:
        model_file = backends.find_static_model(path, options.get("model_prefix"))[0]
        precision = "int8" if backends.is_quantized_model(model_file) else "fp32"
    share = estimate_peak_rss_mb(model_dims(model_file), buckets, backend, precision, include_runtime=False)
    return {"backend": backend, "precision": precision, "buckets": buckets, "share_mb": share,
            "paddle_free": runs_without_paddle(model_dir, backend, options.get("tokenizer", "auto"))}  # fmt: skip


def runs_without_paddle(model_dir: str, backend: str, tokenizer: str) -> bool:
    """Whether a Predictor of this model needs nothing of paddle: an OpenVINO / ONNX Runtime model whose
    standalone tokenizer was verified for its tokenizer files (as the Predictor decides it)."""
    from ernie3.layout import FAST_TOKENIZER_KEY
    from ernie3.model_files import read_task_info
    from ernie3.predict import PADDLE_FREE_BACKENDS
    from ernie3.standalone_tokenizer import is_verified

    if backend not in PADDLE_FREE_BACKENDS or tokenizer not in ("auto", "fast"):
        return False
    return is_verified(model_dir, read_task_info(model_dir).get(FAST_TOKENIZER_KEY))


def serves_without_paddle(models: Sequence[Any]) -> bool:
    """Whether every model of a service runs without paddle (then the service never imports it); a model whose
    files cannot be planned counts as one that needs paddle (loading it says what is wrong)."""
    for spec in models:
        try:
            if not plan_model(spec.path, dict(spec.predictor_options))["paddle_free"]:
                return False
        except (UserError, OSError, ValueError, KeyError):
            return False
    return bool(models)


def check_memory_budget(models: Sequence[Any], max_memory_mb: int = 0) -> list[str]:
    """Lines stating each model's expected memory (models have `name`, `path`, `predictor_options`, as the
    service's ModelSpec); with `max_memory_mb`, a UserError when their sum cannot fit it."""
    plans = {}
    for spec in models:
        try:
            plans[spec.name] = plan_model(spec.path, dict(spec.predictor_options))
        except UserError as exc:
            if max_memory_mb:
                raise UserError(f"model '{spec.name}': {exc}") from None
            # without a budget, loading the model reports what is wrong with it, in its own words
    if not plans:
        return []
    if all(p["paddle_free"] for p in plans.values()) and len(plans) == len(models):
        runtime = PADDLE_FREE_RUNTIME_MB + SERVICE_RUNTIME_MB  # the service never imports paddle
    else:
        runtime = max(memory_model(p["backend"], p["precision"]).runtime_mb for p in plans.values())
    total = runtime + sum(p["share_mb"] for p in plans.values())
    shares = ", ".join(f"{name} {p['share_mb']:.0f} MB" for name, p in plans.items())
    if max_memory_mb and total > max_memory_mb:
        raise UserError(
            f"server.max_memory_mb is {max_memory_mb} MB, but the models are expected to need {total:.0f} MB at peak "
            f"(runtime {runtime:.0f} MB, {shares}); raise it, or lower the models' batch_size or max_seq_length"
        )
    lines = [f"memory: {name}: shapes batch {'/'.join(map(str, p['buckets'].batch_sizes))} × sequence "
             f"{'/'.join(map(str, p['buckets'].seq_lengths))}, expected {p['share_mb']:.0f} MB"
             for name, p in plans.items()]  # fmt: skip
    budget = f" of max_memory_mb {max_memory_mb}" if max_memory_mb else ""
    lines.append(f"memory: expected peak RSS {total:.0f} MB{budget} (runtime {runtime:.0f} MB + models)")
    return lines
