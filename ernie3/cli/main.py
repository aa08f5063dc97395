"""`ernie3 <command> [flags]`: one console command for every job of the toolkit.

    ernie3 train --task_name tnews --train_file train.json --dev_file dev.json --do_train --do_eval --do_export
    ernie3 compress --task_name tnews --model_name_or_path output/tnews/best --train_file ... --dev_file ...
    ernie3 pipeline --task_name tnews --model_name_or_path ernie-3.0-medium-zh --train_file ... --dev_file ...
    ernie3 infer --model_path output/tnews/compress --dev_file dev.json --perf
    ernie3 <command> --help
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ernie3.errors import run_cli


@dataclass(frozen=True)
class Command:
    module: str
    help: str
    #: calls the command's entry point with its arguments
    call: Callable[[object, list[str]], object]


def _main(module: object, argv: list[str]) -> object:
    return module.main(argv)


def _train(module: object, argv: list[str]) -> object:
    return module.train_main(None, argv)  # the summary: stdout


def _compress(module: object, argv: list[str]) -> object:
    return module.compress_main(None, argv)  # the report is the result, and a summary: stdout


COMMANDS: dict[str, Command] = {
    "train": Command("ernie3.summary", "fine-tune, evaluate, predict and export any task (--task_name)", _train),
    "compress": Command("ernie3.summary", "DynaBERT + PTQ sweep + other engines; report and best/", _compress),
    "pipeline": Command("ernie3.cli.pipeline", "fine-tune → compress → benchmark → one report saying what to deploy", _main),
    "infer": Command("ernie3.cli.infer", "an exported/compressed model on a dev set: metric and throughput", _main),
    "predict": Command("ernie3.cli.predict", "predict raw texts (--text, --input_file) on CPU", lambda m, argv: m.main("cpu", argv)),
    "export-onnx": Command("ernie3.cli.export_onnx", "paddle2onnx export (+ dynamic INT8) with a check against Paddle", _main),
    "serve": Command("ernie3.cli.serve", "the HTTP service (deploy/serving/config.yml)", _main),
    "serve-ray": Command("ernie3.cli.serve_ray", "the same service on Ray Serve (replicas, autoscaling)", _main),
    "client": Command("ernie3.cli.client", "ask a served model for predictions", lambda m, argv: m.main(None, argv)),
    "load-test": Command("ernie3.cli.load_test", "loopback load test of a running service", _main),
    "bench": Command("ernie3.cli.bench", "throughput of every deployment path on identical inputs", _main),
    "soak": Command("ernie3.cli.soak", "memory of a served model under sustained traffic", _main),
    "tiny-model": Command("ernie3.cli.tiny_model", "write a tiny random ERNIE (offline runs, tests)", _main),
    "demo": Command("ernie3.cli.demo", "the whole pipeline offline on the bundled samples", _main),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [__doc__.strip(), "", "commands:"]
    lines += [f"  {name:<{width}}  {command.help}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    name, rest = argv[0], argv[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"error: unknown command '{name}' (choose one of: {', '.join(COMMANDS)}; see ernie3 --help)", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"ernie3 {name}", *rest]  # the command's own --help and errors name it as typed
    run_cli(lambda: command.call(importlib.import_module(command.module), rest))


if __name__ == "__main__":
    main()
