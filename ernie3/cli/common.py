"""Command-line pieces infer.py, the deploy predictors and `ernie3` share: count checks, TensorRT flags, and the
batch prediction mode (a file of any size → predictions, resumable; ernie3/batch_predict.py, ernie3/ray_batch.py)."""
from __future__ import annotations

import argparse
import math
import os
from typing import Any, Optional

from ernie3.backends import TensorRTOptions
from ernie3.batch_predict import DEFAULT_CHUNK_SIZE, INPUT_FORMATS, BatchSettings, check_output, predict_file
from ernie3.errors import UserError
from ernie3.fast_tokenizer import TOKENIZER_CHOICES


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Count-like flags must be whole numbers >= 1 when given (0 would divide by zero or select nothing)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")


def add_task_option_argument(parser: Any) -> None:
    parser.add_argument("--task_option", action="append", default=[], metavar="NAME=VALUE",
                        help="a decoding option of the model's task, instead of the value it was exported with "
                             "(repeatable; e.g. qa: max_answer_length=30, n_best_size=10; long texts: pooling=max)")  # fmt: skip


def task_options(values: list[str]) -> dict[str, str]:
    """{name: value} of the repeated --task_option NAME=VALUE flags; the Predictor checks them against the task."""
    options: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise UserError(f"--task_option takes NAME=VALUE (e.g. max_answer_length=30), got {item!r}")
        if name in options:
            raise UserError(f"--task_option {name} is given twice")
        options[name] = value
    return options


def tensorrt_options(args: argparse.Namespace) -> Optional[TensorRTOptions]:
    if not (args.use_trt or args.collect_shape):
        return None
    if args.collect_shape and not args.trt_shape_file:
        raise UserError("--collect_shape needs --trt_shape_file to write to")
    options = TensorRTOptions(
        precision="fp32" if args.precision == "auto" else args.precision,
        workspace_size=args.trt_workspace_size,
        max_batch_size=args.trt_max_shape[0],
        min_shape=args.trt_min_shape,
        opt_shape=args.trt_opt_shape,
        max_shape=args.trt_max_shape,
        shape_file=args.trt_shape_file,
        collect_shapes=args.collect_shape,
    )
    options.validate()
    return options


def add_tokenizer_argument(parser: Any) -> None:
    parser.add_argument("--tokenizer", choices=TOKENIZER_CHOICES, default="auto",
                        help="fast: Rust WordPiece (HF tokenizers); paddlenlp: its Python ErnieTokenizer; auto: the "
                             "fast one when it gives paddlenlp's ids on probe texts at start-up, else paddlenlp's")  # fmt: skip


def add_batch_arguments(parser: Any, input_file: bool = True, output_file: bool = True) -> None:
    """The batch prediction flags; `input_file`/`output_file`: whether to add those two (a parser may have them)."""
    group = parser.add_argument_group("batch prediction over a file of any size (prediction mode: --input_file + --output_file)")
    if input_file:
        group.add_argument("--input_file", help="predict every line of this file into --output_file (instead of scoring a dev set)")
    if output_file:
        group.add_argument("--output_file", help="JSON lines, one per input in input order (a directory with --engine ray)")
    group.add_argument("--input_format", choices=INPUT_FORMATS, default="api",
                       help="api: a JSON value per line as the HTTP API takes it; text: each line is one text; "
                            "dataset: the task's dataset format")  # fmt: skip
    group.add_argument("--chunk_size", type=int, default=DEFAULT_CHUNK_SIZE, help="inputs per committed (resumable) chunk")
    group.add_argument("--skip_invalid_records", action="store_true", help="log invalid lines to OUTPUT.skipped.jsonl and go on")
    group.add_argument("--no_progress", action="store_true", help="no progress bar")
    group.add_argument("--overwrite", action="store_true", help="replace the output of an earlier finished run (only "
                       "an output this tool wrote; any other existing file or directory is refused)")  # fmt: skip
    group.add_argument("--no_input_in_output", action="store_true",
                       help="leave each input out of its output line (by default a line carries it as \"input\")")
    group.add_argument("--engine", choices=("local", "ray"), default="local", help="ray: Ray Data with an actor pool")
    group.add_argument("--ray_address", help="join this Ray cluster (e.g. auto); default: start a local Ray")
    group.add_argument("--num_workers", type=int, default=1, help="--engine ray: predictor actors")
    group.add_argument("--threads_per_worker", type=int, default=1, help="--engine ray: CPU threads of each actor")
    group.add_argument("--ray_ship_model", action="store_true", help="--engine ray: send the model to every node through Ray")


def run_batch_job(args: Any, predictor_options: dict) -> dict:
    """The prediction mode of infer.py / deploy/python: `predictor_options` are the Predictor's keyword arguments."""
    if not args.output_file:
        raise UserError("--input_file needs --output_file (where the predictions go)")
    settings = BatchSettings(args.input_file, args.output_file, args.input_format, args.chunk_size,
                             args.skip_invalid_records, progress=not args.no_progress, overwrite=args.overwrite,
                             include_input=not args.no_input_in_output)  # fmt: skip
    # the output is checked before anything else: a refused output costs no model loading and creates nothing
    if args.engine == "ray":
        from ernie3.ray_batch import check_ray_output

        check_ray_output(settings, predictor_options["model_path"])
    else:
        check_output(settings, predictor_options["model_path"])
    if getattr(args, "task_name", None):
        from ernie3.export import task_of_model_dir
        from ernie3.tasks import get_task

        model_path = predictor_options["model_path"]
        model_dir = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
        if get_task(args.task_name).name != task_of_model_dir(model_dir).name:
            raise UserError(f"--task_name {args.task_name}: {model_path} was fine-tuned for {task_of_model_dir(model_dir).name}")
    if args.engine == "ray":
        from ernie3.ray_batch import RayOptions, predict_on_ray

        options = RayOptions(args.ray_address, args.num_workers, args.threads_per_worker, ship_model=args.ray_ship_model)
        return predict_on_ray(settings, predictor_options, options)
    from ernie3.predict import Predictor

    return predict_file(Predictor(**predictor_options), settings)


def check_number(args: argparse.Namespace, name: str, minimum: float = 0.0, maximum: float = math.inf,
                 above_minimum: bool = False) -> None:  # fmt: skip
    """A float flag must be finite and in range; NaN passes every comparison, so it is refused first."""
    value = getattr(args, name, None)
    if value is None:
        return
    low_ok = value > minimum if above_minimum else value >= minimum
    if not math.isfinite(value) or not low_ok or value > maximum:
        bound = f"{'>' if above_minimum else '>='} {minimum:g}" + (f" and <= {maximum:g}" if maximum < math.inf else "")
        raise UserError(f"--{name} must be a finite number {bound}, got {value}")
