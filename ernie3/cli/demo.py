"""The offline demo (make demo): the pipeline command on the samples shipped in ernie3/samples, with a small randomly
initialised ERNIE 3.0-architecture model — for one task of every task type that ships samples (the task registry
says which: TNEWS classification, MSRA_NER tagging and CMRC2018 reading comprehension today): fine-tune, compress
(DynaBERT + the PTQ sweep + the other engines' candidates), benchmark every candidate, and one report per task
saying which model to deploy and how; then a summary table.

    python -m ernie3.cli.demo [--output_dir demo_output]

Settings for the samples (epochs and learning rate for a random model, QA's short windows, a short DynaBERT
distillation) come from ernie3/samples/config.yml, passed to every stage as --config like any user config file.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Optional, Sequence

from ernie3.errors import run_cli


def demo_tasks() -> list[str]:
    """One task of each type that ships samples (ernie3/samples/<task>/, or a task type's own `sample_dir`)."""
    from ernie3.tasks import sample_tasks

    return [task.name for task in sample_tasks()]

#: a short benchmark of each candidate: enough to rank them on the tiny model
BENCH_FLAGS = ["--bench_min_seconds", "0.2", "--bench_examples", "32", "--bench_batch_size", "32"]


def samples_config() -> str:
    from ernie3.data import SAMPLES_DIR

    return os.path.join(SAMPLES_DIR, "config.yml")


def pipeline_argv(task_name: str, model_dir: str, output_dir: str) -> list[str]:
    from ernie3.data import sample_file

    return [
        "--task_name", task_name, "--model_name_or_path", model_dir, "--output_dir", output_dir,
        "--train_file", sample_file(task_name, "train"), "--dev_file", sample_file(task_name, "dev"),
        "--config", samples_config(), "--overwrite_output_dir", *BENCH_FLAGS,
    ]  # fmt: skip


def summary_table(reports: dict[str, dict]) -> str:
    from ernie3.tasks import get_task

    header = ("task", "fine-tuned (dev)", "candidates", "deploy", "its dev metric", "batch 1 p50 ms", "batch 32 seq/s",
              "report")  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task_name, report in reports.items():
        task = get_task(task_name)
        picked = next(c for c in report["candidates"] if c["name"] == report["deploy"]["candidate"])
        cells = (task_name, report["stages"]["fine-tune"]["metric_summary"], str(len(report["candidates"])),
                 f"{picked['name']} ({picked['backend']} {picked['precision']})", task.metric_summary(picked["metrics"]),
                 f"{picked['batch1_latency_p50_ms']:.1f}", f"{picked['batch_throughput']:.0f}", report["markdown_file"])  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(prog="ernie3 demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_output", help="everything the demo writes goes here")
    args = parser.parse_args(argv)

    from ernie3.cli import pipeline
    from ernie3.modeling import build_tiny_model

    tasks = demo_tasks()
    # what the run costs, said before it starts (measured on 2 shared cores with the three built-in task types)
    print(f"demo: the pipeline (fine-tune → compress → benchmark → report) for {', '.join(tasks)} on the shipped "
          f"samples with a tiny random model; about 3-4 minutes per task on 2 CPU cores (longer when they are busy), "
          f"at most about 1.6 GB of memory, and about 150 MB of disk per task in {args.output_dir}/", flush=True)  # fmt: skip
    started = time.time()
    model_dir = build_tiny_model(os.path.join(args.output_dir, "tiny-ernie"))
    reports = {}
    for task_name in tasks:
        print(f"\n== {task_name} ==", flush=True)
        reports[task_name] = pipeline.main(pipeline_argv(task_name, model_dir, os.path.join(args.output_dir, task_name)))
    print(f"\n== ERNIE 3.0 toolkit demo: one pipeline per task ({time.time() - started:.0f} s; tiny random model, so "
          f"the metrics mean nothing) ==")  # fmt: skip
    print(summary_table(reports), flush=True)
    return reports


if __name__ == "__main__":
    run_cli(main)
