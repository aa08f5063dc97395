"""INT8 storage of the embedding tables of INT8 candidates (issue 20): the word embedding is most of an INT8
model's size (medium: 123 MB of ~160 MB), and INT8 matmuls leave it in FP32.

- Paddle programs (PTQ / QAT candidates): paddleslim's `quant_embedding` (what paddlenlp's `embeddings` compress
  strategy calls) on `lookup_table_v2` weights, abs_max: the program then holds INT8 tables and a
  `dequantize_abs_max` op after each lookup. (paddlenlp uses its `log` variant, whose quantizer walks every
  element in Python: minutes for a 40000 × 768 table.)
- OpenVINO IR (NNCF INT8 candidates): every Gather whose table is an FP32 constant gets the INT8 table with a
  per-row scale (Constant i8 → Convert → Multiply, the decompression pattern OpenVINO keeps compressed). NNCF's
  own `compress_weights` skips the word embedding: OpenVINO's Paddle frontend reads it through a Select that zeroes
  the padding row, so NNCF finds no constant feeding the Gather.

Each result is a candidate directory beside its source (`<candidate>/emb-int8`) that loads on its own.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Optional, Sequence

import numpy as np

from ernie3.files import atomic_directory
from ernie3.layout import OPENVINO_IR_FILE, Candidate, derived_candidate_path

#: the variant name of a candidate with INT8 embeddings, derived from an INT8 candidate
EMBEDDING_VARIANT = "emb-int8"
#: Paddle's embedding lookup ops (what paddleslim's quant_embedding rewrites)
LOOKUP_OPS = ("lookup_table_v2", "lookup_table")


def _copy_side_files(source_dir: str, staging: str, skip: Sequence[str]) -> None:
    for entry in os.listdir(source_dir):
        path = os.path.join(source_dir, entry)
        if os.path.isfile(path) and entry not in skip:
            shutil.copy2(path, staging)


def quantize_program_embeddings(source_dir: str, model_prefix: str, output_dir: str) -> str:
    """A copy of the Paddle program `source_dir/<model_prefix>.pdmodel` whose embedding tables are stored INT8."""
    import paddle
    import paddleslim.quant as quant

    model_files = (model_prefix + ".pdmodel", model_prefix + ".pdiparams", model_prefix + ".pdiparams.info")
    with atomic_directory(output_dir) as staging:
        _copy_side_files(source_dir, staging, skip=model_files)
        paddle.enable_static()
        try:
            scope, place = paddle.static.Scope(), paddle.CPUPlace()
            with paddle.static.scope_guard(scope):
                executor = paddle.static.Executor(place)
                program, feed_names, fetch_targets = paddle.static.load_inference_model(
                    os.path.join(source_dir, model_prefix), executor
                )
                config = {"quantize_op_types": ["lookup_table_v2"], "lookup_table_v2": {"quantize_type": "abs_max"}}
                quantized = quant.quant_embedding(program, place, config, scope=scope)
                # feed Variables, not names (paddlenlp's own `embeddings` strategy passes the names, which paddle 3
                # rejects: "'feed_vars' should be a Variable"; that path is not used)
                feeds = [quantized.global_block().var(name) for name in feed_names]
                paddle.static.save_inference_model(os.path.join(staging, model_prefix), feeds, fetch_targets,
                                                   executor, program=quantized)  # fmt: skip
        finally:
            paddle.disable_static()
    return output_dir


def program_embedding_dtypes(model_file: str) -> dict[str, str]:
    """Table name → dtype of every embedding lookup's table in a Paddle program (read from the program)."""
    from paddle.base import core

    with open(model_file, "rb") as handle:
        desc = core.ProgramDesc(handle.read())
    block = desc.block(0)  # `desc` must outlive `block`
    tables = {}
    for index in range(block.op_size()):
        op = block.op(index)
        if op.type() in LOOKUP_OPS:
            name = op.input("W")[0]
            tables[name] = str(block.var(name.encode()).dtype()).split(".")[-1]
    return tables


def _embedding_table(gather: Any) -> Optional[Any]:
    """The FP32 Constant that is a Gather's table: directly, or through the Select that zeroes the padding row."""
    node = gather.input_value(0).get_node()
    if node.get_type_name() == "Select":
        node = next((value.get_node() for value in node.input_values()[1:]
                     if value.get_node().get_type_name() == "Constant" and len(value.get_shape()) == 2), None)  # fmt: skip
    if node is None or node.get_type_name() != "Constant" or len(node.get_output_shape(0)) != 2:
        return None
    return node if node.get_output_element_type(0).get_type_name() == "f32" else None


def compress_ir_embeddings(model: Any) -> int:
    """Replace the FP32 embedding tables of an OpenVINO model by INT8 ones with a per-row scale (in place);
    returns how many tables were replaced."""
    import openvino.opset13 as ops

    replaced = 0
    for gather in [op for op in model.get_ops() if op.get_type_name() == "Gather"]:
        table = _embedding_table(gather)
        if table is None:
            continue
        weights = table.get_data().astype(np.float32)
        scale = np.abs(weights).max(axis=1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0  # an all-zero row (the padding row) stays zero
        quantized = np.clip(np.round(weights / scale), -127, 127).astype(np.int8)
        dequantized = ops.multiply(ops.convert(ops.constant(quantized), np.float32), ops.constant(scale.astype(np.float32)))
        dequantized.get_output_tensor(0).set_names(set())
        for target in list(table.output(0).get_target_inputs()):
            target.replace_source_output(dequantized.output(0))
        replaced += 1
    return replaced


def quantize_ir_embeddings(source_dir: str, output_dir: str) -> str:
    """A copy of the OpenVINO IR candidate in `source_dir` whose embedding tables are stored INT8."""
    import openvino as ov

    model = ov.Core().read_model(os.path.join(source_dir, OPENVINO_IR_FILE))
    compress_ir_embeddings(model)
    with atomic_directory(output_dir) as staging:
        _copy_side_files(source_dir, staging, skip=(OPENVINO_IR_FILE, "model.bin"))
        ov.save_model(model, os.path.join(staging, OPENVINO_IR_FILE), compress_to_fp16=False)
    return output_dir


def ir_embedding_dtypes(model_file: str) -> list[str]:
    """The element type of every embedding Gather's stored table in an OpenVINO IR (i8 once quantized)."""
    import openvino as ov

    types = []
    for gather in (op for op in ov.Core().read_model(model_file).get_ops() if op.get_type_name() == "Gather"):
        node = gather.input_value(0).get_node()
        if node.get_type_name() == "Select":
            node = node.input_value(2).get_node()
        while node.get_type_name() in ("Multiply", "Subtract", "Convert"):  # the decompression chain
            node = node.input_value(0).get_node()
        if node.get_type_name() == "Constant" and len(node.get_output_shape(0)) == 2:
            types.append(node.get_output_element_type(0).get_type_name())
    return types


def build_embedding_candidates(candidates: Sequence[Candidate]) -> list[Candidate]:
    """An INT8-embedding candidate for every INT8 candidate (Paddle program or OpenVINO IR)."""
    built = []
    for source in candidates:
        if source.precision != "int8" or source.source is None:
            continue
        name, path = derived_candidate_path(source, EMBEDDING_VARIANT)
        if source.backend == "paddle" and source.model_prefix is not None:
            quantize_program_embeddings(source.path, source.model_prefix, path)
        elif source.backend == "openvino" and source.model_file == OPENVINO_IR_FILE:
            quantize_ir_embeddings(source.path, path)
        else:
            continue
        built.append(Candidate(name, path, source.model_file, source.backend, source.precision, source.name))
    return built
