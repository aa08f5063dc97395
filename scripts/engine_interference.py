"""Do engines timed one after another in one process disturb each other? (issue 19, item 2)

Builds a random ERNIE model (default: the mini shape 6L-384H), exports it, and measures in one process:
- CPU time the process burns while idle right after a run of each engine (worker threads still spinning);
- Paddle FP32 batch-32 throughput right after an OpenVINO run, with and without a pause, interleaved with Paddle
  FP32 after Paddle FP32 (the baseline), and the same for OpenVINO FP32 after Paddle, over several rounds.

    python scripts/engine_interference.py --work_dir /tmp/interference --rounds 5
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def idle_burn(seconds: float) -> float:
    """CPU seconds the process uses while its Python thread sleeps (spinning worker threads)."""
    before = cpu_seconds()
    time.sleep(seconds)
    return cpu_seconds() - before


def throughput(backend, feed: dict, seconds: float) -> float:
    backend.run(feed)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        backend.run(feed)
        runs += 1
    return runs * feed["input_ids"].shape[0] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work_dir", default="/tmp/interference")
    parser.add_argument("--hidden_size", type=int, default=384)
    parser.add_argument("--num_hidden_layers", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--num_threads", type=int, default=2)
    args = parser.parse_args()

    from ernie3.backends import create_backend

    model_dir = os.path.join(args.work_dir, "export")
    if not os.path.isdir(model_dir):
        from paddlenlp.transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ernie3.export import export_inference_model
        from ernie3.modeling import build_tiny_model
        from ernie3.tasks import get_task

        task = get_task("tnews")
        base = build_tiny_model(os.path.join(args.work_dir, "base"), hidden_size=args.hidden_size,
                                num_hidden_layers=args.num_hidden_layers, num_attention_heads=12,
                                intermediate_size=4 * args.hidden_size, vocab_size=40000)
        model = AutoModelForSequenceClassification.from_pretrained(base, **task.model_kwargs())
        export_inference_model(model, AutoTokenizer.from_pretrained(base), task, model_dir, 128)
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(5, 20000, size=(32, 128), dtype=np.int64),
            "token_type_ids": np.zeros((32, 128), dtype=np.int64)}
    paddle = create_backend(model_dir, "paddle", precision="fp32", num_threads=args.num_threads)
    openvino = create_backend(model_dir, "openvino", precision="fp32", num_threads=args.num_threads)
    engines = {"paddle": paddle, "openvino": openvino}

    print("idle CPU seconds per second right after a run (spinning worker threads):")
    for name, backend in engines.items():
        throughput(backend, feed, args.seconds)
        burns = [idle_burn(0.25) for _ in range(8)]
        print(f"  after {name}: " + " ".join(f"{b / 0.25:.2f}" for b in burns))

    def after(previous: str, pause: float, timed: str = "paddle") -> float:
        throughput(engines[previous], feed, args.seconds)
        time.sleep(pause)
        return throughput(engines[timed], feed, args.seconds)

    cases = {"paddle after paddle": ("paddle", 0.0), "paddle after openvino": ("openvino", 0.0),
             f"paddle after openvino, {args.pause:g} s pause": ("openvino", args.pause),
             f"paddle after paddle, {args.pause:g} s pause": ("paddle", args.pause),
             "openvino after openvino": ("openvino", 0.0, "openvino"),
             "openvino after paddle": ("paddle", 0.0, "openvino"),
             f"openvino after paddle, {args.pause:g} s pause": ("paddle", args.pause, "openvino")}
    results: dict[str, list[float]] = {case: [] for case in cases}
    names = list(cases)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for case in names[shift:] + names[:shift]:
            results[case].append(after(*cases[case]))
    print(f"FP32 batch 32 × seq 128, {args.num_threads} threads, seq/s over {args.rounds} rounds:")
    for case, values in results.items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        print(f"  {case:40s} median {median:7.1f}  IQR {q1:7.1f}–{q3:7.1f}  ({' '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
