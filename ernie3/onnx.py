"""paddle2onnx export of static models and ONNX Runtime dynamic INT8 quantization."""
from __future__ import annotations

import contextlib
import os
import shutil
from typing import Optional

from ernie3.backends import PaddleBackend, find_static_model, is_quantized_model
from ernie3.errors import UserError
from ernie3.files import check_output_location, write_errors_as_user_errors
from ernie3.layout import ONNX_FILE, TASK_INFO_FILE
from ernie3.logs import native_output_captured
from ernie3.model_files import load_onnx
from ernie3.standalone_tokenizer import TOKENIZER_FILES

ONNX_INT8_FILE = "model.int8.onnx"
#: the opsets paddle2onnx 2.1 converts to (it aborts the process outside them)
MIN_OPSET, MAX_OPSET = 7, 21
# Files that let an ONNX model directory be used by the Predictor like a Paddle one.
SIDE_FILES = (TASK_INFO_FILE, *TOKENIZER_FILES)


def export_onnx(model_dir: str, output_dir: Optional[str] = None, opset_version: int = 13, prefix: Optional[str] = None) -> str:
    """Convert a float static model (model.pdmodel/.pdiparams) to ONNX; returns the .onnx path."""
    import paddle2onnx

    program, params = find_static_model(model_dir, prefix)
    output_dir = output_dir or model_dir
    # a file, a folder under a file, a read-only or pseudo file system (/proc, /sys): one line before any work
    check_output_location(output_dir, "--output_dir")
    # paddle2onnx aborts the whole process (SIGABRT) on these instead of raising: check them first
    if not MIN_OPSET <= opset_version <= MAX_OPSET:
        raise UserError(f"--opset_version {opset_version}: paddle2onnx supports opsets {MIN_OPSET} to {MAX_OPSET}")
    if is_quantized_model(program):
        raise UserError(
            f"{program} is a Paddle INT8 model, which paddle2onnx cannot convert: export the float model "
            "(e.g. the compress output's float/) and add --quantize for ONNX Runtime INT8"
        )
    PaddleBackend(program)  # damaged or mismatched files: one clear error here, not paddle2onnx's exit(255)
    with write_errors_as_user_errors(output_dir):
        os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, ONNX_FILE)
    partial = target + ".partial"
    try:
        with native_output_captured("paddle2onnx"):  # it prints its progress (and Polygraphy's hints) to stdout
            paddle2onnx.export(program, params, save_file=partial, opset_version=opset_version, enable_onnx_checker=True)
    except (Exception, SystemExit) as exc:  # plain Exceptions for unsupported programs; sys.exit on load failures
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise UserError(f"paddle2onnx could not convert {program}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    with write_errors_as_user_errors(output_dir):
        os.replace(partial, target)
        copy_side_files(os.path.dirname(program), output_dir)
    return target


def copy_side_files(source_dir: str, target_dir: str) -> None:
    if os.path.abspath(source_dir) == os.path.abspath(target_dir):
        return
    for name in SIDE_FILES:
        if os.path.isfile(os.path.join(source_dir, name)):
            shutil.copy2(os.path.join(source_dir, name), target_dir)


def constants_to_initializers(model) -> int:
    """Move weights stored as `Constant` nodes into graph initializers; returns how many moved.

    onnxruntime's `quantize_dynamic` only quantizes MatMul weights that are initializers: a graph that keeps its
    weights in Constant nodes (as some paddle2onnx exports do) comes out the same size and speed, silently.
    """
    from onnx import numpy_helper

    graph = model.graph
    moved, kept = 0, []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if node.op_type == "Constant" and value is not None and len(node.output) == 1:
            tensor = numpy_helper.from_array(numpy_helper.to_array(value), name=node.output[0])
            graph.initializer.append(tensor)
            moved += 1
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return moved


def quantize_onnx_dynamic(onnx_file: str, output_file: Optional[str] = None) -> str:
    """ONNX Runtime dynamic INT8 (weights int8, activations quantized on the fly) of a float ONNX model."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    output_file = output_file or os.path.join(os.path.dirname(onnx_file), ONNX_INT8_FILE)
    model = load_onnx(onnx_file)
    constants_to_initializers(model)
    prepared = output_file + ".prepared.onnx"
    onnx.save(model, prepared)
    try:
        with native_output_captured("onnxruntime quantization"):  # it warns about pre-processing on every call
            quantize_dynamic(prepared, output_file + ".partial", weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    finally:
        os.remove(prepared)
    os.replace(output_file + ".partial", output_file)
    return output_file


def compare_with_paddle(paddle_model_dir: str, onnx_file: str, examples: list[dict], num_threads: int = 2) -> dict:
    """Run both models on the same examples: largest raw-output difference and decision agreement."""
    import numpy as np

    from ernie3.predict import Predictor

    reference = Predictor(paddle_model_dir, num_threads=num_threads)
    candidate = Predictor(onnx_file, num_threads=num_threads)
    encoded = reference.task.encode(examples, reference.tokenizer, reference.max_seq_length)
    reference_outputs = reference.outputs(encoded.features)
    candidate_outputs = candidate.outputs(encoded.features)
    max_difference = max(
        float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
        for a, b in zip(reference_outputs, candidate_outputs)
    )
    task = reference.task
    decisions = [
        [task.answer(result) for result in task.decode(examples, encoded, outputs)]
        for outputs in (reference_outputs, candidate_outputs)
    ]
    agreement = sum(a == b for a, b in zip(*decisions)) / len(examples)
    return {"examples": len(examples), "max_abs_difference": max_difference, "agreement": agreement,
            "precision": candidate.precision}  # fmt: skip
