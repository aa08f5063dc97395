"""Throughput of every deployment variant on identical inputs, in one run: Paddle Inference oneDNN FP32 and INT8,
DynaBERT-pruned FP32 and INT8, ONNX Runtime FP32 and dynamic INT8. Writes a Markdown table, JSON and a PNG plot.

    python -m ernie3.bench                       # random ERNIE 3.0 medium shape (6L-768H-12 heads, vocab 40000)
    python -m ernie3.bench --compress_dir output/tnews/compress --batch_sizes 1 32 --seq_lengths 128
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import time
from typing import Optional, Sequence

import numpy as np

from ernie3.errors import UserError, run_cli

MEDIUM_SHAPE = {"hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 3072}
ERNIE_VOCAB_SIZE = 40000
BASELINE = "paddle-fp32"


def write_synthetic_tnews(path: str, count: int, seed: int) -> str:
    """TNEWS-format records of random CJK text: enough for calibration and a DynaBERT step, not for accuracy."""
    rng = random.Random(seed)
    labels = ("100", "101", "102", "103", "104")
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            sentence = "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(20, 120)))
            handle.write(json.dumps({"label": rng.choice(labels), "sentence": sentence}, ensure_ascii=False) + "\n")
    return path


def build_random_variants(work_dir: str, shape: dict, vocab_size: int, seed: int = 7) -> str:
    """A random model of the given shape pushed through the project's own compress path; returns its output dir."""
    from paddlenlp.transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ernie3.compress import run as compress
    from ernie3.modeling import build_tiny_model
    from ernie3.tasks import get_task

    base = build_tiny_model(os.path.join(work_dir, "base"), vocab_size=vocab_size, seed=seed, **shape)
    classifier_dir = os.path.join(work_dir, "classifier")
    model = AutoModelForSequenceClassification.from_pretrained(base, **get_task("tnews").model_kwargs())
    model.save_pretrained(classifier_dir)
    AutoTokenizer.from_pretrained(base).save_pretrained(classifier_dir)
    data = write_synthetic_tnews(os.path.join(work_dir, "synthetic.json"), 64, seed)
    compress_dir = os.path.join(work_dir, "compress")
    common = ["--task_name", "tnews", "--model_name_or_path", classifier_dir, "--train_file", data, "--dev_file", data,
              "--algo_list", "hist", "--batch_size_list", "8", "--batch_num_list", "1", "--max_metric_drop", "1",
              "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--logging_steps", "1"]  # fmt: skip
    compress(
        "seq_cls",
        [*common, "--strategy", "dynabert+ptq", "--width_mult_list", "3/4", "--max_steps", "1", "--save_steps", "1",
         "--output_dir", compress_dir, "--overwrite_output_dir"],
    )  # fmt: skip
    # INT8 of the unpruned model: PTQ of the float model the first run exported
    compress("seq_cls", [*common, "--strategy", "ptq", "--output_dir", os.path.join(work_dir, "compress-ptq"),
                         "--overwrite_output_dir"])  # fmt: skip
    for quantized in glob.glob(os.path.join(work_dir, "compress-ptq", "float", "hist*")):
        target = os.path.join(compress_dir, "float", os.path.basename(quantized))
        if not os.path.exists(target):
            os.rename(quantized, target)
    return compress_dir


def variants_of(compress_dir: str, onnx_dir: str) -> dict[str, str]:
    """name → model path for each variant found in a compress output dir (+ the ONNX files made from its float)."""
    from ernie3.onnx import export_onnx, quantize_onnx_dynamic

    def first(pattern: str) -> Optional[str]:
        matches = sorted(glob.glob(os.path.join(compress_dir, pattern)))
        return os.path.dirname(matches[0]) if matches else None

    float_dir = os.path.join(compress_dir, "float")
    if not os.path.isfile(os.path.join(float_dir, "model.pdmodel")):
        raise UserError(f"--compress_dir: {compress_dir} has no float/model.pdmodel (not a compress output dir)")
    variants = {"paddle-fp32": float_dir}
    found = {
        "paddle-int8": first("float/*/int8.pdmodel"),
        "pruned-fp32": first("width_mult_*/model.pdmodel"),
        "pruned-int8": first("width_mult_*/*/int8.pdmodel"),
    }
    variants.update({name: path for name, path in found.items() if path})
    onnx_fp32 = export_onnx(float_dir, onnx_dir)
    variants["onnxruntime-fp32"] = onnx_fp32
    variants["onnxruntime-int8"] = quantize_onnx_dynamic(onnx_fp32)
    return variants


def measure(backend, inputs: dict, iterations: int, min_seconds: float, warmup: int) -> dict:
    for _ in range(warmup):
        backend.run(inputs)
    latencies = []
    started = time.perf_counter()
    while len(latencies) < iterations or time.perf_counter() - started < min_seconds:
        tick = time.perf_counter()
        backend.run(inputs)
        latencies.append(time.perf_counter() - tick)
    batch = inputs["input_ids"].shape[0]
    return {
        "throughput": batch * len(latencies) / sum(latencies),
        "latency_p50_ms": float(np.percentile(latencies, 50) * 1000),
        "latency_p99_ms": float(np.percentile(latencies, 99) * 1000),
        "iterations": len(latencies),
    }


def run_benchmark(
    variants: dict[str, str],
    batch_sizes: Sequence[int],
    seq_lengths: Sequence[int],
    num_threads: int,
    iterations: int,
    min_seconds: float,
    vocab_size: int,
    warmup: int = 3,
) -> list[dict]:
    from tqdm import tqdm

    from ernie3.backends import create_backend, model_size_mb

    rng = np.random.default_rng(0)
    inputs = {
        (b, s): {"input_ids": rng.integers(5, min(vocab_size, 20000), size=(b, s), dtype=np.int64),
                 "token_type_ids": np.zeros((b, s), dtype=np.int64)}
        for b in batch_sizes for s in seq_lengths
    }  # fmt: skip
    rows = []
    with tqdm(total=len(variants) * len(inputs), desc="benchmark", unit="run") as progress:
        for name, path in variants.items():
            backend = create_backend(path, num_threads=num_threads)
            for (batch, seq), feed in inputs.items():
                progress.set_postfix_str(f"{name} batch {batch} seq {seq}")
                result = measure(backend, feed, iterations, min_seconds, warmup)
                rows.append({"variant": name, "precision": backend.precision, "batch_size": batch, "seq_length": seq,
                             "size_mb": round(model_size_mb(path), 2), "path": path, **result})  # fmt: skip
                progress.update()
            del backend
    for row in rows:
        base = next(r for r in rows if r["variant"] == BASELINE and r["batch_size"] == row["batch_size"]
                    and r["seq_length"] == row["seq_length"])  # fmt: skip
        row["vs_paddle_fp32"] = row["throughput"] / base["throughput"]
    return rows


def markdown_table(rows: list[dict], num_threads: int) -> str:
    lines = [
        f"# Inference benchmark ({num_threads} CPU threads)",
        "",
        "| variant | precision | batch | seq len | throughput (seq/s) | × paddle FP32 | p50 latency (ms) | p99 latency (ms) | size (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['precision']} | {r['batch_size']} | {r['seq_length']} | {r['throughput']:.1f} | "
            f"{r['vs_paddle_fp32']:.2f} | {r['latency_p50_ms']:.1f} | {r['latency_p99_ms']:.1f} | {r['size_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted({(r["batch_size"], r["seq_length"]) for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    figure, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 4), squeeze=False)
    for axis, (batch, seq) in zip(axes[0], shapes):
        values = [next(r["throughput"] for r in rows if r["variant"] == v and r["batch_size"] == batch
                       and r["seq_length"] == seq) for v in variants]  # fmt: skip
        bars = axis.bar(range(len(variants)), values, color=["#4c72b0" if "fp32" in v else "#dd8452" for v in variants])
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
        axis.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
        axis.set_title(f"batch {batch}, seq {seq}")
        axis.set_ylabel("sequences / s")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compress_dir", help="a compress_*.py output dir (default: build a random medium model)")
    parser.add_argument("--output_dir", default="bench_output")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seq_lengths", type=int, nargs="+", default=[128])
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5, help="timed runs per variant and shape (at least)")
    parser.add_argument("--min_seconds", type=float, default=3.0, help="time each variant and shape at least this long")
    parser.add_argument("--hidden_size", type=int, default=MEDIUM_SHAPE["hidden_size"])
    parser.add_argument("--num_hidden_layers", type=int, default=MEDIUM_SHAPE["num_hidden_layers"])
    parser.add_argument("--num_attention_heads", type=int, default=MEDIUM_SHAPE["num_attention_heads"])
    parser.add_argument("--intermediate_size", type=int, default=MEDIUM_SHAPE["intermediate_size"])
    parser.add_argument("--vocab_size", type=int, default=ERNIE_VOCAB_SIZE)
    args = parser.parse_args(argv)
    if min(args.batch_sizes) < 1 or min(args.seq_lengths) < 3:
        raise UserError("--batch_sizes must be >= 1 and --seq_lengths >= 3")

    os.makedirs(args.output_dir, exist_ok=True)
    started = time.time()
    compress_dir = args.compress_dir
    if compress_dir is None:
        shape = {k: getattr(args, k) for k in MEDIUM_SHAPE}
        compress_dir = build_random_variants(os.path.join(args.output_dir, "models"), shape, args.vocab_size)
    elif not os.path.isdir(compress_dir):
        raise UserError(f"--compress_dir: directory not found: {compress_dir}")
    variants = variants_of(compress_dir, os.path.join(args.output_dir, "onnx"))
    rows = run_benchmark(variants, args.batch_sizes, args.seq_lengths, args.num_threads, args.iterations,
                         args.min_seconds, args.vocab_size)  # fmt: skip
    table = markdown_table(rows, args.num_threads)
    with open(os.path.join(args.output_dir, "benchmark.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    with open(os.path.join(args.output_dir, "benchmark.json"), "w", encoding="utf-8") as handle:
        json.dump({"settings": vars(args), "rows": rows}, handle, indent=2)
    plot(rows, os.path.join(args.output_dir, "benchmark.png"))
    print(table)
    print(f"written: {args.output_dir}/benchmark.md, benchmark.json, benchmark.png ({time.time() - started:.0f} s)")
    return {"rows": rows, "table": table}


if __name__ == "__main__":
    run_cli(main)
