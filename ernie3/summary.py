"""The few lines a run ends with on stdout: the metric, where the outputs are, the next command to run."""
from __future__ import annotations

import os
import shlex
from typing import Any, Optional

from ernie3.layout import REPORT_MD

ARROW = "→"


def _metric(metrics: Optional[dict], name: str) -> Optional[float]:
    if not metrics:
        return None
    value = metrics.get(f"eval_{name}", metrics.get(name))
    return value if isinstance(value, (int, float)) else None


def _command(*parts: Optional[str]) -> str:
    return " ".join(shlex.quote(part) for part in parts if part is not None)


def _data_flags(summary: dict) -> list[str]:
    flags: list[str] = []
    for name in ("train_file", "dev_file"):
        if summary.get(name):
            flags += [f"--{name}", summary[name]]
    return flags


def train_summary(summary: dict[str, Any]) -> str:
    """What a training run (ernie3.train.run's result) says last: best dev metric and checkpoint, outputs, next."""
    from ernie3.train import command_for
    from ernie3.tasks import get_task

    task = get_task(summary["task"])
    name = summary.get("metric_name") or task.metric_name
    output_dir = summary["output_dir"]
    lines = []
    metric = _metric(summary.get("eval"), name)
    best_dir = summary.get("best_model_dir")
    if best_dir:
        where = f" at {summary['best_checkpoint']}" if summary.get("best_checkpoint") else ""
        shown = f"best dev {name} {metric:.4f}{where}" if metric is not None else f"best model{where}"
        lines.append(f"{shown} {ARROW} {best_dir}")
    elif metric is not None:
        lines.append(f"dev {name} {metric:.4f} ({summary.get('model')})")
    if summary.get("eval_per_class"):
        lines.append(f"per-class report {ARROW} {summary['eval_per_class']}")
    if summary.get("predict_file"):
        lines.append(f"test predictions {ARROW} {summary['predict_file']}")
    if summary.get("export_dir"):
        lines.append(f"static model for deployment {ARROW} {summary['export_dir']}")
    if summary.get("log_file"):
        lines.append(f"log (library INFO/DEBUG lines) {ARROW} {summary['log_file']}")
    if best_dir:
        compress = command_for(task, "compress")
        script = ["python", compress] if compress.endswith(".py") else compress.split()
        nxt = _command(*script, "--task_name", task.name, "--model_name_or_path", best_dir, *_data_flags(summary),
                       "--output_dir", os.path.join(output_dir, "compress"))  # fmt: skip
        lines.append(f"next: {nxt}")
    elif summary.get("export_dir"):
        nxt = _command("python", "infer.py", "--model_path", summary["export_dir"],
                       *(["--dev_file", summary["dev_file"]] if summary.get("dev_file") else []), "--perf")  # fmt: skip
        lines.append(f"next: {nxt}")
    return "\n".join(lines)


def compress_summary(report: dict[str, Any], log_file: Optional[str] = None, dev_file: Optional[str] = None) -> str:
    """What a compress run says after its report: the picked candidate, where it is, the next command."""
    from ernie3.tasks import get_task

    best = next((r for r in report.get("candidates", []) if r.get("name") == report.get("best")), {})
    name = get_task(report["task"]).metric_name
    metric = best.get(name, best.get("metric"))
    figures = []
    if isinstance(metric, (int, float)):
        figures.append(f"dev {name} {metric:.4f}")
    if isinstance(best.get("throughput"), (int, float)):
        figures.append(f"{best['throughput']:.1f} seq/s")
    shown = f" ({', '.join(figures)})" if figures else ""
    best_dir = report["best_dir"]
    output_dir = os.path.dirname(best_dir.rstrip(os.sep))
    lines = [f"picked {report.get('best')}{shown} {ARROW} {best_dir}",
             f"all candidates {ARROW} {os.path.join(output_dir, REPORT_MD)}"]  # fmt: skip
    if log_file:
        lines.append(f"log (library INFO/DEBUG lines) {ARROW} {log_file}")
    nxt = _command("python", "infer.py", "--model_path", best_dir, *(["--dev_file", dev_file] if dev_file else []),
                   "--perf")  # fmt: skip
    lines.append(f"next: {nxt}")
    return "\n".join(lines)


def train_main(task_type: Optional[str] = None, argv: Optional[list[str]] = None) -> dict:
    """run_*.py / `ernie3 train`: the run, then its summary on stdout (the libraries' lines are in its log)."""
    from ernie3.train import run

    result = run(task_type, argv)
    print(train_summary(result), flush=True)
    return result


def compress_main(task_type: Optional[str] = None, argv: Optional[list[str]] = None) -> dict:
    """compress_*.py / `ernie3 compress`: the report (the result) and the summary on stdout."""
    from ernie3.compress import run

    report = run(task_type, argv)
    print(report["markdown"], flush=True)
    print(compress_summary(report, report.get("log_file"), report.get("dev_file")), flush=True)
    return report
