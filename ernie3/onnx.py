"""paddle2onnx export of static models and ONNX Runtime dynamic INT8 quantization."""
from __future__ import annotations

import os
import shutil
from typing import Optional

from ernie3.backends import find_static_model
from ernie3.errors import UserError
from ernie3.export import TASK_INFO_FILE

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
# Files that let an ONNX model directory be used by the Predictor like a Paddle one.
SIDE_FILES = (TASK_INFO_FILE, "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def export_onnx(model_dir: str, output_dir: Optional[str] = None, opset_version: int = 13, prefix: Optional[str] = None) -> str:
    """Convert a float static model (model.pdmodel/.pdiparams) to ONNX; returns the .onnx path."""
    import paddle2onnx

    program, params = find_static_model(model_dir, prefix)
    output_dir = output_dir or model_dir
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, ONNX_FILE)
    partial = target + ".partial"
    try:
        paddle2onnx.export(program, params, save_file=partial, opset_version=opset_version, enable_onnx_checker=True)
    except Exception as exc:  # paddle2onnx raises plain Exceptions for unsupported programs
        raise UserError(f"paddle2onnx could not convert {program}: {str(exc).splitlines()[0][:200]}") from None
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

    paddle2onnx 2.1 stores every weight as a Constant node, and onnxruntime's `quantize_dynamic` only quantizes
    MatMul weights that are initializers: without this, it silently quantizes nothing.
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

    if not os.path.isfile(onnx_file):
        raise UserError(f"ONNX model not found: {onnx_file}")
    output_file = output_file or os.path.join(os.path.dirname(onnx_file), ONNX_INT8_FILE)
    model = onnx.load(onnx_file)
    constants_to_initializers(model)
    prepared = output_file + ".prepared.onnx"
    onnx.save(model, prepared)
    try:
        quantize_dynamic(prepared, output_file + ".partial", weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    finally:
        os.remove(prepared)
    os.replace(output_file + ".partial", output_file)
    return output_file
