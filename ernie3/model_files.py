"""The one checked reader of a model directory's own files: its task record (ernie3_task.json), a compress
candidate's record (candidate.json), ONNX models, OpenVINO IR (.xml + .bin) and Paddle static programs.

Every stage that reads them (infer.py, deploy, serving and its memory plan, bench, compress's candidates) comes
here, so that a damaged file is one `UserError` naming the file and what is wrong with it, never a traceback from
json, protobuf or a C++ library.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from ernie3.errors import UserError
from ernie3.layout import CANDIDATE_FILE, FAST_TOKENIZER_KEY, TASK_INFO_FILE


def first_line(exc: BaseException) -> str:
    """The telling line of a library error (OpenVINO's carry C++ source locations on the lines before it)."""
    lines = [line for line in str(exc).splitlines() if line.strip() and "Exception from" not in line]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def read_json_object(path: str, what: str) -> dict:
    """A JSON object from a UTF-8 file (a BOM is accepted); anything else is one error naming `what` it should be."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            value = json.load(handle)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: damaged {what} (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: damaged {what} (not JSON: {exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: damaged {what} (expected a JSON object, got a {type(value).__name__})")
    return value


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# -- ernie3_task.json ----------------------------------------------------------------------------------------------


def read_task_info(directory: str) -> dict:
    """The task record of a model directory, checked: a damaged record is one clear error naming the field."""
    path = os.path.join(directory, TASK_INFO_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{directory} has no {TASK_INFO_FILE}: not a model exported by this toolkit's --do_export")
    info = read_json_object(path, "task record")
    problem = None
    if not isinstance(info.get("task_name"), str) or not info["task_name"]:
        problem = f"field 'task_name' missing or not a string (got {info.get('task_name')!r})"
    elif not _positive_int(info.get("max_seq_length")):
        problem = f"field 'max_seq_length' must be a positive integer, got {info.get('max_seq_length')!r}"
    elif not isinstance(info.get("labels", []), list) or not all(isinstance(x, str) for x in info.get("labels", [])):
        problem = f"field 'labels' must be a list of strings, got {info.get('labels')!r}"[:200]
    elif not isinstance(info.get("options", {}), dict):
        problem = f"field 'options' must be an object, got {info.get('options')!r}"[:200]
    elif "max_position_embeddings" in info and not _positive_int(info["max_position_embeddings"]):
        problem = f"field 'max_position_embeddings' must be a positive integer, got {info['max_position_embeddings']!r}"
    problem = problem or fast_tokenizer_problem(info.get(FAST_TOKENIZER_KEY))
    if problem:
        raise UserError(f"{path}: damaged task record ({problem})")
    return info


def fast_tokenizer_problem(record: Any) -> Optional[str]:
    """What is wrong with a task record's "fast_tokenizer" entry (absent: older model directories), or None."""
    if record is None:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        return f"field '{FAST_TOKENIZER_KEY}' must be an object with a 'status' string, got {record!r}"[:200]
    files = record.get("tokenizer_files")
    if record["status"] == "verified" and (not isinstance(files, dict) or not files
                                           or not all(isinstance(v, str) for v in files.values())):  # fmt: skip
        return f"field '{FAST_TOKENIZER_KEY}' is verified but names no tokenizer file digests (got {files!r})"[:200]
    return None


# -- candidate.json ------------------------------------------------------------------------------------------------


def candidate_record_path(model_path: str) -> str:
    """Where a model path's candidate record would be: in the directory, or beside the model file."""
    directory = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    return os.path.join(directory, CANDIDATE_FILE)


def read_candidate_settings(model_path: str) -> dict:
    """backend/precision/model_file recorded by compress in a candidate directory (e.g. best/), checked; {} for a
    plain model (no candidate.json)."""
    from ernie3.backends.base import BACKENDS, PRECISIONS  # the backends read this module: imported when needed

    path = candidate_record_path(model_path)
    if not os.path.isfile(path):
        return {}
    record = read_json_object(path, "candidate record")
    allowed = {"backend": BACKENDS, "precision": (*PRECISIONS, "auto")}
    settings = {}
    for key in ("backend", "precision", "model_file"):
        value = record.get(key)
        if value is None and key != "backend":
            continue  # optional: the backend's default precision, the backend's usual file name
        if not isinstance(value, str) or not value:
            raise UserError(f"{path}: damaged candidate record (field '{key}' missing or not a string, got {value!r})")
        if key in allowed and value not in allowed[key]:
            raise UserError(f"{path}: damaged candidate record ('{key}' is {value!r}, not one of "
                            f"{', '.join(allowed[key])})")  # fmt: skip
        settings[key] = value
    model_file = settings.get("model_file")
    if model_file is not None:
        # a bare file name in the candidate's own directory: the record must not point elsewhere
        if os.path.basename(model_file) != model_file or model_file in (".", ".."):
            raise UserError(f"{path}: damaged candidate record ('model_file' must be a file name in "
                            f"{os.path.dirname(path)}, got {model_file!r})")  # fmt: skip
        if not os.path.isfile(os.path.join(os.path.dirname(path), model_file)):
            raise UserError(f"{path}: names model_file {model_file!r}, which is not in {os.path.dirname(path)}")
    return settings


# -- model graphs ----------------------------------------------------------------------------------------------------


def load_onnx(onnx_file: str, load_external_data: bool = True) -> Any:
    """An onnx.ModelProto that parsed and passed onnx.checker (a few ms on a small model): garbage, empty or
    truncated files are one error here, before ONNX Runtime or the memory plan meet them."""
    import onnx

    if not os.path.isfile(onnx_file):
        raise UserError(f"ONNX model not found: {onnx_file}")
    try:
        model = onnx.load(onnx_file, load_external_data=load_external_data)
        newest_opset = onnx.defs.onnx_opset_version()
        # a model from a newer exporter than the installed onnx knows is left to ONNX Runtime to judge (it may run
        # it; the checker would refuse it for its version alone)
        if model.ir_version <= onnx.IR_VERSION and all(o.version <= newest_opset for o in model.opset_import
                                                       if o.domain in ("", "ai.onnx")):  # fmt: skip
            external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
            # by path only where weights live in other files (over 2 GB): parsing the file again costs as much
            onnx.checker.check_model(onnx_file if external else model)
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError, OSError for missing external data
        raise UserError(f"{onnx_file}: not a readable ONNX model ({first_line(exc)})") from None
    return model


def read_openvino_ir(xml_file: str) -> Any:
    """An ov.Model read from an IR (.xml + its .bin): a missing, empty or truncated .bin or a malformed .xml is one
    error naming the file (OpenVINO checks that every weight lies inside the .bin)."""
    import openvino as ov

    if not os.path.isfile(xml_file):
        raise UserError(f"OpenVINO IR not found: {xml_file}")
    bin_file = os.path.splitext(xml_file)[0] + ".bin"
    if not os.path.isfile(bin_file):
        raise UserError(f"{xml_file}: OpenVINO IR without its weights file {os.path.basename(bin_file)}")
    try:
        return ov.Core().read_model(xml_file)
    except Exception as exc:  # OpenVINO raises RuntimeError/OVError subclasses with long C++ traces
        shown = f"{xml_file} (+ {os.path.basename(bin_file)})"  # either file may be the damaged one
        raise UserError(f"{shown}: not a readable OpenVINO IR ({first_line(exc)})") from None


def read_paddle_program(program_file: str) -> Any:
    """The ProgramDesc of a Paddle static program (.pdmodel), checked that it parses."""
    from paddle.base import core

    try:
        with open(program_file, "rb") as handle:
            desc = core.ProgramDesc(handle.read())
    except OSError as exc:
        raise UserError(f"{program_file}: cannot read the Paddle program ({exc.strerror or exc})") from None
    except Exception:  # Paddle raises its own C++ errors for bytes that are not a ProgramDesc
        raise UserError(f"{program_file} is not a Paddle static program") from None
    # an empty file parses as a program without blocks, and reading its block 0 crashes the process (SIGSEGV)
    if desc.num_blocks() < 1 or desc.block(0).op_size() < 1:
        raise UserError(f"{program_file} is not a Paddle static program (empty or truncated: it holds no ops)")
    return desc
