"""deploy/python and `ernie3 predict`: raw texts (from arguments or a file) → the Predictor → one JSON result per line on stdout."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, Sequence

from ernie3.errors import UserError
from ernie3.files import read_lines
from ernie3.cli.common import (add_batch_arguments, add_task_option_argument, add_tokenizer_argument, check_positive,
                               run_batch_job, task_options,
                               tensorrt_options)
from ernie3.layout import resolve_model_path
from ernie3.logs import set_verbose


def read_inputs(path: str, task: Any) -> list[Any]:
    """One input per non-blank line, in the form the task reads (a sentence; text<TAB>text_pair for pair tasks; a
    JSON object for QA). Each line is checked by the task's own input rules here, so that an error names its line."""
    from ernie3.tasks import RecordError

    inputs: list[Any] = []
    for line_number, line in read_lines(path, "--input_file"):
        try:
            value = task.input_from_line(line)
            task.example_from_text(value)
        except RecordError as exc:
            raise UserError(f"{path}:{line_number}: {exc}") from None
        inputs.append(value)
    return inputs


def inputs_from_arguments(args: argparse.Namespace, task: Any) -> list[Any]:
    """Raw inputs from the repeatable input flags (--text/--text_pair, --question/--context, ...)."""
    from ernie3.tasks import RecordError, all_input_flags

    try:
        return task.inputs_from_flags({flag: getattr(args, flag) for flag in all_input_flags()})
    except RecordError as exc:
        raise UserError(str(exc)) from None


def main(device: str, argv: Optional[Sequence[str]] = None) -> list[dict]:
    from ernie3.predict import Predictor
    from ernie3.tasks import RecordError, all_input_flags

    parser = argparse.ArgumentParser(description=f"Predict with an exported or compressed model on {device.upper()}.")
    parser.add_argument("--model_path", required=True, help="export dir, compress output dir (uses best/), or .onnx file")
    for flag, text in all_input_flags().items():
        parser.add_argument(f"--{flag}", action="append", default=[], help=text)
    parser.add_argument("--input_file", help="one input per line (text, text<TAB>pair, or QA JSON); "
                        "with --output_file: streamed batch prediction, lines as --input_format says")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16", "int8"), default="auto")
    parser.add_argument("--backend", choices=("paddle", "onnxruntime", "openvino"), default=None,
                        help="default: a compress candidate's candidate.json, else by model file")  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=32)
    add_tokenizer_argument(parser)
    add_task_option_argument(parser)
    add_batch_arguments(parser, input_file=False)  # --input_file with --output_file: streamed batch prediction
    if device == "cpu":
        parser.add_argument("--num_threads", type=int, default=2)
    else:
        parser.add_argument("--use_trt", action="store_true", help="run through TensorRT")
    parser.add_argument("--verbose", action="store_true", help="show Paddle's native logs (pass logs on model load)")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)
    check_positive(args, "batch_size", "num_threads")
    options = task_options(args.task_option)

    tensorrt = None
    if device == "gpu" and args.use_trt:
        tensorrt = tensorrt_options(argparse.Namespace(
            use_trt=True, collect_shape=False, precision=args.precision, trt_workspace_size=1 << 30,
            trt_min_shape=[1, 1], trt_opt_shape=[args.batch_size, 128], trt_max_shape=[args.batch_size, 512],
            trt_shape_file=None,
        ))  # fmt: skip
    if args.output_file and not args.input_file:
        raise UserError("--output_file needs --input_file (the file to predict into it); without one, results go to stdout")
    if args.input_file and args.output_file:
        return run_batch_job(args, dict(
            model_path=resolve_model_path(args.model_path), backend=args.backend, device=device,
            precision=args.precision, num_threads=getattr(args, "num_threads", 1), batch_size=args.batch_size,
            tensorrt=tensorrt, tokenizer=args.tokenizer, task_options=options,
        ))  # fmt: skip
    predictor = Predictor(
        resolve_model_path(args.model_path), backend=args.backend, device=device, precision=args.precision,
        num_threads=getattr(args, "num_threads", 1), batch_size=args.batch_size, tensorrt=tensorrt,
        tokenizer=args.tokenizer,
        task_options=options,
    )  # fmt: skip
    task = predictor.task
    inputs = read_inputs(args.input_file, task) if args.input_file else inputs_from_arguments(args, task)
    if not inputs:
        flags = " ".join(f"--{flag}" for flag in task.input_flags)
        raise UserError(f"no input: pass {flags} (one value of each per input) or --input_file")
    try:
        results = predictor.predict_texts(inputs)
    except RecordError as exc:
        raise UserError(f"bad input: {exc}") from None
    for source, result in zip(inputs, results):
        print(json.dumps({"input": source, **result}, ensure_ascii=False))
    sys.stdout.flush()
    return results
