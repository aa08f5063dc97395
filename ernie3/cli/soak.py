"""Soak benchmark: random batch sizes and text lengths for N minutes against a Predictor or the running service,
with the process's RSS sampled over time. Appends to OUTPUT/soak.json and rewrites soak.md (table) and soak.png.

    python -m ernie3.cli.soak --model_path output/tnews/export --minutes 3 --label paddle-fp32
    python -m ernie3.cli.soak --model_path output/tnews/export --target service --clients 4 --minutes 3

Each run: load, warm up (the Predictor's pass over its bucket shapes; with a Predictor that has none, one batch
of the largest shape), then traffic until the time is up. The table gives RSS at start, after warm-up, peak, end,
peak / after-warm-up and the growth over the last half of the traffic (max RSS of the last half vs. its start).
Texts are single strings (classification and NER models).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional, Sequence

from ernie3.cli.common import check_number, check_positive
from ernie3.errors import UserError, run_cli
from ernie3.memory import RssSampler
from ernie3.tasks.base import map_texts

SOAK_JSON, SOAK_MD, SOAK_PNG = "soak.json", "soak.md", "soak.png"
MAX_MINUTES = 7 * 24 * 60


class Traffic:
    """Random batches: 1..max_batch inputs in the shape of the task's sample input (a text, a pair, a question and
    context), each text 1..max_chars random CJK characters, from a fixed seed."""

    def __init__(self, max_batch: int, max_chars: int, seed: int = 0, template: Any = "text"):
        self.rng = random.Random(seed)
        self.max_batch, self.max_chars = max_batch, max_chars
        self.template = template

    def random_string(self, chars: Optional[int] = None) -> str:
        length = chars or self.rng.randint(1, self.max_chars)
        return "".join(chr(self.rng.randint(0x4E00, 0x9FA5)) for _ in range(length))

    def text(self, chars: Optional[int] = None) -> Any:
        return map_texts(self.template, lambda _: self.random_string(chars))

    def batch(self) -> list:
        return [self.text() for _ in range(self.rng.randint(1, self.max_batch))]

    def largest(self) -> list:
        return [self.text(self.max_chars) for _ in range(self.max_batch)]


def input_template(model_path: str) -> Any:
    """The shape of one raw input of the model's task: its first sample input."""
    from ernie3.export import task_of_model_dir
    from ernie3.layout import resolve_model_path

    path = resolve_model_path(model_path)
    task = task_of_model_dir(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))
    samples = task.sample_inputs()
    return samples[0] if samples else "text"


class Progress:
    """A line on stderr every `every` seconds while the traffic runs (a soak is minutes of otherwise silence)."""

    def __init__(self, every: float, minutes: float, sampler: Any) -> None:
        self.every, self.total, self.sampler = every, minutes * 60, sampler
        self.started = self.last = time.monotonic()

    def tick(self, texts: int, errors: int = 0, force: bool = False) -> None:
        now = time.monotonic()
        if self.every <= 0 or (not force and now - self.last < self.every):
            return
        self.last = now
        elapsed = min(now - self.started, self.total)
        rss = f", RSS {self.sampler.samples[-1][1]:.0f} MB" if self.sampler.samples else ""
        failed = f", {errors} failed requests" if errors else ""
        print(f"soak: {elapsed / 60:.1f} of {self.total / 60:.1f} min, {texts} texts "
              f"({texts / max(now - self.started, 1e-9):.1f}/s){rss}{failed}", file=sys.stderr, flush=True)  # fmt: skip


def soak_predictor(args: argparse.Namespace) -> dict:
    """The Predictor in this process: load, warm up, random batches until the time is up."""
    from ernie3.predict import Predictor

    import paddle.inference  # noqa: F401  (the runtime is part of the start figure, as in a service)

    traffic = Traffic(args.batch_size, args.max_text_chars, args.seed, input_template(args.model_path))
    with RssSampler(interval_s=args.interval) as sampler:
        predictor = Predictor(args.model_path, num_threads=args.num_threads, batch_size=args.batch_size)
        sampler.mark("loaded")
        warm_up = getattr(predictor, "warm_up", None)
        if warm_up is not None:
            warm_up(lambda batch, length: sampler.mark(f"shape {batch}x{length}"))
        else:  # a predictor without shape buckets: one batch of the largest shape, as a service's first minutes
            predictor.predict_texts(traffic.largest())
        sampler.mark("warmed_up")
        texts = batches = 0
        started = time.monotonic()
        deadline = started + args.minutes * 60
        progress = Progress(args.progress_every, args.minutes, sampler)
        while time.monotonic() < deadline:
            batch = traffic.batch()
            predictor.predict_texts(batch)
            texts, batches = texts + len(batch), batches + 1
            progress.tick(texts)
        seconds = time.monotonic() - started
        progress.tick(texts, force=True)
    plan = predictor.memory_plan() if hasattr(predictor, "memory_plan") else {}
    return {"samples": sampler.samples, "marks": sampler.marks, "summary": sampler.summary(), "texts": texts,
            "batches": batches, "texts_per_s": texts / seconds, "backend": predictor.backend_name,
            "precision": predictor.precision, "plan": plan}  # fmt: skip


def soak_service(args: argparse.Namespace) -> dict:
    """deploy/serving/serve.py as a subprocess on a free loopback port, `clients` threads posting random
    requests; RSS is the server process's."""
    import requests
    import yaml

    from ernie3.serving.config import predictor_option_names

    model = {"name": "soak", "path": os.path.abspath(args.model_path), "num_threads": args.num_threads,
             "batch_size": args.batch_size}  # fmt: skip
    if "warmup" in predictor_option_names():
        model["warmup"] = True
    config = {"server": {"host": "127.0.0.1", "port": 0, "log_level": "warning"},
              "defaults": {"max_batch_size": args.batch_size, "max_texts_per_request": args.batch_size,
                           "max_text_chars": args.max_text_chars, "request_timeout_s": 600},
              "models": [model]}  # fmt: skip
    workdir = tempfile.mkdtemp(prefix="soak-")
    config_path = os.path.join(workdir, "config.yml")
    with open(config_path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    serve_command = [sys.executable, "-m", "ernie3.cli.serve", "--config", config_path]
    process = subprocess.Popen(serve_command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found: dict = {}
    lines: list = []

    def read_stderr() -> None:
        for line in process.stderr:
            lines.append(line.rstrip())
            match = re.search(r"serving .* on (http://\S+)$", line.strip())
            if match:
                found["url"] = match.group(1)

    threading.Thread(target=read_stderr, daemon=True).start()
    template = input_template(args.model_path)
    traffic = Traffic(args.batch_size, args.max_text_chars, args.seed, template)
    counts = {"texts": 0, "batches": 0, "errors": 0}
    lock = threading.Lock()
    try:
        with RssSampler(pid=process.pid, interval_s=args.interval) as sampler:
            while "url" not in found:
                if process.poll() is not None:
                    raise UserError("the service did not start: " + (lines[-1] if lines else "no output"))
                time.sleep(0.2)
            url = found["url"]
            if not url.startswith("http://127.0.0.1:"):
                raise UserError(f"the soak only talks to loopback; the service is on {url}")
            sampler.mark("loaded")
            # with warm-up, the model's worker thread runs every bucket shape before this first request
            first = traffic.largest() if "warmup" not in model else [traffic.text(1)]
            requests.post(f"{url}/models/soak/predict", json={"texts": first}, timeout=600)
            sampler.mark("warmed_up")
            deadline = time.monotonic() + args.minutes * 60
            started = time.monotonic()

            def client(seed: int) -> None:
                own = Traffic(args.batch_size, args.max_text_chars, args.seed * 1000 + seed, template)
                with requests.Session() as session:
                    while time.monotonic() < deadline:
                        texts = own.batch()
                        answer = session.post(f"{url}/models/soak/predict", json={"texts": texts}, timeout=600)
                        with lock:
                            counts["batches"] += 1
                            counts["texts" if answer.ok else "errors"] += len(texts) if answer.ok else 1

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            for thread in threads:
                thread.start()
            progress = Progress(args.progress_every, args.minutes, sampler)
            while any(thread.is_alive() for thread in threads):
                time.sleep(0.5)
                with lock:
                    progress.tick(counts["texts"], counts["errors"])
            for thread in threads:
                thread.join()
            seconds = time.monotonic() - started
            progress.tick(counts["texts"], counts["errors"], force=True)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return {"samples": sampler.samples, "marks": sampler.marks, "summary": sampler.summary(),
            "texts_per_s": counts["texts"] / seconds, **counts, "backend": "service", "precision": ""}  # fmt: skip


def load_results(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_atomic(path: str, text: str) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def markdown_table(results: dict) -> str:
    lines = [
        "| run | target | backend | minutes | texts/s | start MB | after warm-up MB | peak MB | end MB | "
        "peak / warm | growth last half | stated peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, run in results.items():
        s = run["summary"]
        stated = run.get("plan", {}).get("expected_peak_rss_mb", "")
        lines.append(
            f"| {label} | {run['target']} | {run['backend']} {run['precision']} | {run['minutes']:g} | "
            f"{run['texts_per_s']:.1f} | {s['start_mb']:.0f} | {s['after_warmup_mb']:.0f} | {s['peak_mb']:.0f} | "
            f"{s['end_mb']:.0f} | {s['peak_over_warm']:.2f} | {100 * s['growth_last_half']:.1f}% | {stated} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    for label, run in results.items():
        times = [t / 60 for t, _ in run["samples"]]
        axis.plot(times, [v for _, v in run["samples"]], label=label, linewidth=1.2)
    axis.set_xlabel("minutes")
    axis.set_ylabel("RSS (MB)")
    axis.set_title("RSS under random batch sizes and text lengths")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    temporary = f"{path}.tmp-{os.getpid()}.png"
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    os.replace(temporary, path)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True, help="an exported model dir or .onnx file (seq_cls/token_cls)")
    parser.add_argument("--target", choices=("predictor", "service"), default="predictor")
    parser.add_argument("--label", help="name of this run in the table (default: target + model)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch_size", type=int, default=16, help="largest batch (texts per request/batch)")
    parser.add_argument("--max_text_chars", type=int, default=512)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (service)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between RSS samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress_every", type=float, default=10.0,
                        help="seconds between progress lines on stderr (0: none)")
    parser.add_argument("--output_dir", default="soak_output")
    args = parser.parse_args(argv)
    # a week of soak at most; NaN minutes would run no traffic and still write a result row
    check_number(args, "minutes", 0, MAX_MINUTES, above_minimum=True)
    check_number(args, "interval", 0, 3600, above_minimum=True)
    check_number(args, "progress_every", 0, 86400)
    check_positive(args, "batch_size", "max_text_chars", "num_threads", "clients")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if not os.path.exists(args.model_path):
        raise UserError(f"--model_path: not found: {args.model_path}")
    run = soak_service(args) if args.target == "service" else soak_predictor(args)
    run.update(target=args.target, minutes=args.minutes, model_path=args.model_path, num_threads=args.num_threads,
               batch_size=args.batch_size, max_text_chars=args.max_text_chars)  # fmt: skip
    os.makedirs(args.output_dir, exist_ok=True)
    json_path = os.path.join(args.output_dir, SOAK_JSON)
    results = load_results(json_path)
    label = args.label or f"{args.target}:{os.path.basename(os.path.normpath(args.model_path))}"
    results[label] = run
    write_atomic(json_path, json.dumps(results, indent=1))
    table = markdown_table(results)
    write_atomic(os.path.join(args.output_dir, SOAK_MD), table)
    plot(results, os.path.join(args.output_dir, SOAK_PNG))
    print(table)
    return run


if __name__ == "__main__":
    run_cli(main)
