"""infer.py: a static model (exported, compressed, or ONNX) on a task's dev set: the metric, and with --perf,
throughput and latency percentiles after warm-up; with --input_file/--output_file, predictions for a file of any size.
"""
from __future__ import annotations

import argparse
import time
from typing import Optional, Sequence

from ernie3.cli.common import (add_batch_arguments, add_task_option_argument, add_tokenizer_argument, check_positive,
                               run_batch_job, task_options,
                               tensorrt_options)
from ernie3.errors import UserError
from ernie3.files import check_report_file, write_json_atomic
from ernie3.layout import resolve_model_path
from ernie3.logs import set_verbose
from ernie3.timing import measure_predictor


#: what every metrics report holds: an existing --output_file without them is not one, and is never replaced
REPORT_KEYS = ("task", "model", "backend", "metrics")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task_name", help="checked against the task the model was fine-tuned for")
    parser.add_argument("--model_path", required=True, help="export dir, compress output dir (uses best/), a candidate dir, or a .onnx file")
    parser.add_argument("--dev_file", help="local dev file in the official format (default: download by task name)")
    parser.add_argument("--backend", choices=("paddle", "onnxruntime", "openvino"), default=None,
                        help="default: a compress candidate's candidate.json, else by model file")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16", "int8"), default="auto",
                        help="auto: as recorded in candidate.json, int8 for quantized models (detected from the "
                             "graph), else fp32; bf16 needs a CPU with native BF16")  # fmt: skip
    parser.add_argument("--use_trt", action="store_true", help="TensorRT on GPU (needs paddlepaddle-gpu with TensorRT)")
    parser.add_argument("--trt_min_shape", type=int, nargs=2, default=[1, 1], metavar=("BATCH", "SEQ"))
    parser.add_argument("--trt_opt_shape", type=int, nargs=2, default=[32, 128], metavar=("BATCH", "SEQ"))
    parser.add_argument("--trt_max_shape", type=int, nargs=2, default=[32, 512], metavar=("BATCH", "SEQ"))
    parser.add_argument("--trt_shape_file", help="dynamic shapes collected by a run with --collect_shape")
    parser.add_argument("--collect_shape", action="store_true", help="record tensor shapes into --trt_shape_file")
    parser.add_argument("--trt_workspace_size", type=int, default=1 << 30)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, help="default: the length the model was exported with")
    parser.add_argument("--num_threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--max_examples", type=int, help="use only the first N dev examples")
    parser.add_argument("--perf", action="store_true", help="also measure throughput and latency after warm-up")
    parser.add_argument("--output_file", help="write the metrics (and perf figures) as JSON here; with --input_file, "
                                               "the predictions (JSON lines)")  # fmt: skip
    add_task_option_argument(parser)
    parser.add_argument("--verbose", action="store_true", help="show Paddle's native logs (pass logs on model load)")
    add_tokenizer_argument(parser)
    add_batch_arguments(parser, output_file=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    from ernie3.data import load_examples
    from ernie3.predict import Predictor
    from ernie3.tasks import get_task

    args = build_parser().parse_args(argv)
    set_verbose(args.verbose)
    check_positive(args, "batch_size", "num_threads", "max_examples", "max_seq_length", "trt_workspace_size")
    if (args.use_trt or args.collect_shape) and args.device != "gpu":
        raise UserError("--use_trt/--collect_shape need --device gpu (TensorRT runs on NVIDIA GPUs only)")
    options = task_options(args.task_option)
    model_path = resolve_model_path(args.model_path)
    if args.input_file:  # prediction mode: a file of any size → predictions, streamed (ernie3/batch_predict.py)
        return run_batch_job(args, dict(
            model_path=model_path, backend=args.backend, device=args.device, precision=args.precision,
            num_threads=args.num_threads, batch_size=args.batch_size, max_seq_length=args.max_seq_length,
            tensorrt=tensorrt_options(args), tokenizer=args.tokenizer, task_options=options,
        ))  # fmt: skip
    if args.output_file:
        check_report_file(args.output_file, "--output_file", REPORT_KEYS)
    predictor = Predictor(
        model_path,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        num_threads=args.num_threads,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        tensorrt=tensorrt_options(args),
        tokenizer=args.tokenizer,
        task_options=options,
    )
    task = predictor.task
    if args.task_name and get_task(args.task_name).name != task.name:
        raise UserError(f"--task_name {args.task_name}: {model_path} was fine-tuned for {task.name}")
    examples = load_examples(task, "dev", args.dev_file)[: args.max_examples]
    print(f"{task.name}: {len(examples)} dev examples, model {predictor.model_file} "
          f"({predictor.backend_name}, {predictor.device}, {predictor.precision})", flush=True)  # fmt: skip

    started = time.perf_counter()
    results = predictor.predict(examples)
    metrics = task.score(examples, results)
    report = {"task": task.name, "model": predictor.model_file, "backend": predictor.backend_name,
              "device": predictor.device, "precision": predictor.precision, "examples": len(examples),
              "metrics": metrics}  # fmt: skip
    print("dev " + ", ".join(f"{name} = {value:.4f}" for name, value in metrics.items()))
    if args.perf:
        report["perf"] = measure_predictor(predictor, examples, time.perf_counter() - started)
        perf = report["perf"]
        print(f"throughput: {perf['throughput']:.1f} seq/s end to end, {perf['model_throughput']:.1f} seq/s in the model "
              f"(batch {args.batch_size}, {args.num_threads} threads); batch latency p50 {perf['latency_p50_ms']:.1f} ms, "
              f"p90 {perf['latency_p90_ms']:.1f} ms, p99 {perf['latency_p99_ms']:.1f} ms")  # fmt: skip
    if args.output_file:
        write_json_atomic(args.output_file, report)
    return report
