"""Throughput of every deployment path on identical inputs, in one run: Paddle Inference oneDNN FP32, BF16 and
INT8 (PTQ), DynaBERT-pruned FP32/BF16/INT8, OpenVINO FP32, BF16 and NNCF INT8 (unpruned and pruned), ONNX Runtime
FP32 and dynamic INT8 — model-only rows on random ids, plus end-to-end rows (tokenization + model + the task's
decoding) on real texts. Variants are measured in interleaved rounds (each round times every variant once, in
rotated order; median and range over the rounds), so a shared machine's drift hits all of them alike. Writes a
Markdown table, JSON and a PNG plot.

    python -m ernie3.cli.bench                   # random ERNIE 3.0 medium shape (6L-768H-12 heads, vocab 40000)
    python -m ernie3.cli.bench --texts_file ../shared/data/tnews/dev.json --timing_rounds 5
    python -m ernie3.cli.bench --compress_dir output/tnews/compress --batch_sizes 1 32 --seq_lengths 128
    python -m ernie3.cli.bench --compress_dir output/tnews/compress --repeat_variants paddle-fp32   # spread check

`measure_candidate` (a candidate's batch-1 latency and batch-N throughput through the Predictor) is what the
pipeline command measures each compress candidate with.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import statistics
import time
from dataclasses import asdict
from typing import Optional, Sequence

import numpy as np

from ernie3 import layout
from ernie3.cli.common import check_number, check_positive
from ernie3.errors import UserError, run_cli
from ernie3.compress import candidate_size_mb
from ernie3.layout import Candidate
from ernie3.timing import DEFAULT_ROUNDS, SETTLE_SECONDS, Spread, format_duration, latency_percentiles

MEDIUM_SHAPE = {"hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 3072}
ERNIE_VOCAB_SIZE = 40000
BASELINE = "paddle-fp32"
MODEL_ONLY, END_TO_END = "model", "end-to-end"
#: the latency percentiles every row reports
LATENCY_PERCENTILES = (50, 99)
#: position table of the random model this command builds; --seq_lengths cannot go beyond it
RANDOM_MAX_POSITIONS = 512
#: ERNIE 3.0's position table (2048 in every size's config): the bound when a compress dir does not record its own
ERNIE_MAX_POSITIONS = 2048
#: the name of a variant's second copy (--repeat_variants)
REPEAT_SUFFIX = "#2"


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

    base = build_tiny_model(os.path.join(work_dir, "base"), vocab_size=vocab_size, seed=seed,
                            max_position_embeddings=RANDOM_MAX_POSITIONS, **shape)
    classifier_dir = os.path.join(work_dir, "classifier")
    model = AutoModelForSequenceClassification.from_pretrained(base, **get_task("tnews").model_kwargs())
    model.save_pretrained(classifier_dir)
    AutoTokenizer.from_pretrained(base).save_pretrained(classifier_dir)
    data = write_synthetic_tnews(os.path.join(work_dir, "synthetic.json"), 64, seed)
    compress_dir = os.path.join(work_dir, "compress")
    common = ["--task_name", "tnews", "--model_name_or_path", classifier_dir, "--train_file", data, "--dev_file", data,
              "--algo_list", "hist", "--batch_size_list", "8", "--batch_num_list", "1", "--max_metric_drop", "1",
              "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--logging_steps", "1",
              # the bench times the variants itself: compress only has to build them
              "--timing_rounds", "1", "--measure_rss", "false", "--int8_embeddings", "false"]  # fmt: skip
    # NNCF INT8 of the float and pruned models comes with the OpenVINO engine (accuracy control means nothing on
    # random weights and synthetic labels: off)
    compress(
        "seq_cls",
        [*common, "--strategy", "dynabert+ptq", "--width_mult_list", "3/4", "--max_steps", "1", "--save_steps", "1",
         "--engines", "openvino", "--nncf_accuracy_control", "false", "--nncf_subset_size", "64",
         "--output_dir", compress_dir, "--overwrite_output_dir"],
    )  # fmt: skip
    # INT8 of the unpruned model: PTQ of the float model the first run exported
    compress("seq_cls", [*common, "--strategy", "ptq", "--output_dir", os.path.join(work_dir, "compress-ptq"),
                         "--engines", "paddle", "--overwrite_output_dir"])  # fmt: skip
    ptq_dir = os.path.join(work_dir, "compress-ptq")
    unpruned = layout.float_candidates(ptq_dir)[:1]
    for quantized in layout.quantized_candidates(ptq_dir, unpruned):
        target = os.path.join(compress_dir, layout.FLOAT_DIR, os.path.basename(quantized.path))
        if not os.path.exists(target):
            os.rename(quantized.path, target)
    return compress_dir


def variants_of(compress_dir: str, onnx_dir: str, with_bf16: bool) -> list[Candidate]:
    """Every deployment path found in a compress output dir (+ the ONNX files made from its float model), each a
    Candidate named by its path (paddle-fp32, pruned-int8, openvino-bf16, ...)."""
    from ernie3.onnx import export_onnx, quantize_onnx_dynamic

    floats = layout.float_candidates(compress_dir)
    unpruned = floats[0]
    if not os.path.isfile(unpruned.model_path):
        raise UserError(f"--compress_dir: {compress_dir} has no {layout.FLOAT_DIR}/{unpruned.model_file} "
                        "(not a compress output dir)")  # fmt: skip
    pruned = floats[1] if len(floats) > 1 else None

    def first_quantized(source: Optional[Candidate]) -> Optional[Candidate]:
        found = layout.quantized_candidates(compress_dir, [source]) if source else []
        return found[0] if found else None

    def nncf_int8(source: Optional[Candidate]) -> Optional[Candidate]:
        if source is None:
            return None
        _, directory = layout.derived_candidate_path(source, "openvino-int8")
        ir = Candidate("", directory, layout.OPENVINO_IR_FILE)
        return ir if os.path.isfile(ir.model_path) else None

    def renamed(name: str, found: Optional[Candidate], backend: str, precision: str) -> list[Candidate]:
        return [Candidate(name, found.path, found.model_file, backend, precision)] if found else []

    precisions = ["fp32", "bf16"] if with_bf16 else ["fp32"]
    variants = [
        *(Candidate(f"paddle-{p}", unpruned.path, unpruned.model_file, "paddle", p) for p in precisions),
        *renamed("paddle-int8", first_quantized(unpruned), "paddle", "int8"),
        *(v for p in precisions for v in renamed(f"pruned-{p}", pruned, "paddle", p)),
        *renamed("pruned-int8", first_quantized(pruned), "paddle", "int8"),
        *(Candidate(f"openvino-{p}", unpruned.path, unpruned.model_file, "openvino", p) for p in precisions),
        *renamed("openvino-int8", nncf_int8(unpruned), "openvino", "int8"),
        *renamed("pruned-openvino-int8", nncf_int8(pruned), "openvino", "int8"),
    ]
    onnx_fp32 = export_onnx(unpruned.path, onnx_dir)
    onnx_int8 = quantize_onnx_dynamic(onnx_fp32)
    variants.append(Candidate("onnxruntime-fp32", onnx_dir, os.path.basename(onnx_fp32), "onnxruntime", "fp32"))
    variants.append(Candidate("onnxruntime-int8", onnx_dir, os.path.basename(onnx_int8), "onnxruntime", "int8"))
    return variants


def predictor_for(candidate: Candidate, batch_size: int, num_threads: int):
    """The Predictor that runs a candidate on its own backend and precision."""
    from ernie3.predict import Predictor

    return Predictor(candidate.model_path, backend=candidate.backend, precision=candidate.precision,
                     model_prefix=candidate.model_prefix, num_threads=num_threads, batch_size=batch_size)  # fmt: skip


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
        **latency_percentiles(latencies, LATENCY_PERCENTILES),
        "iterations": len(latencies),
    }


def run_benchmark(
    variants: Sequence[Candidate],
    batch_sizes: Sequence[int],
    seq_lengths: Sequence[int],
    num_threads: int,
    iterations: int,
    min_seconds: float,
    vocab_size: int,
    warmup: int = 3,
    rounds: int = DEFAULT_ROUNDS,
    texts: Optional[list[dict]] = None,
) -> list[dict]:
    """Model-only rows per variant × shape (random ids), and with `texts` one end-to-end row per variant at the
    largest batch size (the Predictor: tokenization + model + decoding). Each round measures every variant once, in
    turn, starting one variant later each round; a row holds the median throughput and its range over the rounds
    (throughput_low, throughput_high), and the median latencies."""
    from tqdm import tqdm

    from ernie3.backends import create_backend

    rng = np.random.default_rng(0)
    inputs = {
        (b, s): {"input_ids": rng.integers(5, min(vocab_size, 20000), size=(b, s), dtype=np.int64),
                 "token_type_ids": np.zeros((b, s), dtype=np.int64)}
        for b in batch_sizes for s in seq_lengths
    }  # fmt: skip
    samples: dict[tuple, list[dict]] = {}
    # end to end at the largest batch only: tokenization and decoding cost the same per text at any batch size
    e2e_batches = [max(batch_sizes)] if texts else []
    steps = rounds * len(variants) * (len(inputs) + len(e2e_batches))
    with tqdm(total=steps, desc="benchmark", unit="run") as progress:
        for round_number in range(rounds):
            # each round starts one variant later: a slow phase of a shared machine spreads over all variants
            shift = round_number % len(variants)
            for variant in list(variants[shift:]) + list(variants[:shift]):
                time.sleep(SETTLE_SECONDS)  # the previous variant's worker threads stop spinning
                backend = create_backend(variant.model_path, variant.backend, precision=variant.precision,
                                         num_threads=num_threads, model_prefix=variant.model_prefix)  # fmt: skip
                for (batch, seq), feed in inputs.items():
                    progress.set_postfix_str(f"round {round_number + 1}: {variant.name} batch {batch} seq {seq}")
                    result = measure(backend, feed, iterations, min_seconds, warmup)
                    samples.setdefault((variant.name, MODEL_ONLY, batch, seq), []).append(
                        {**result, "precision": backend.precision})
                    progress.update()
                del backend
                for batch in e2e_batches:
                    progress.set_postfix_str(f"round {round_number + 1}: {variant.name} end to end, batch {batch}")
                    predictor = predictor_for(variant, batch, num_threads)
                    result = measure_end_to_end(predictor, texts, min_seconds)
                    samples.setdefault((variant.name, END_TO_END, batch, result.pop("seq_length")), []).append(
                        {**result, "precision": predictor.precision})
                    del predictor
                    progress.update()
    by_name = {variant.name: variant for variant in variants}
    rows = []
    for (name, mode, batch, seq), measured in samples.items():
        spread = Spread.of([m["throughput"] for m in measured])
        median = {key: float(statistics.median(m[key] for m in measured)) for key in ("latency_p50_ms", "latency_p99_ms")}
        rows.append({"variant": name, "mode": mode, "backend": by_name[name].backend,
                     "precision": measured[0]["precision"], "batch_size": batch, "seq_length": seq,
                     "size_mb": round(candidate_size_mb(by_name[name]), 2), "path": by_name[name].path,
                     "throughput": spread.median, "throughput_low": spread.low, "throughput_high": spread.high, **median,
                     "rounds": [round(m["throughput"], 2) for m in measured],
                     "iterations": sum(m["iterations"] for m in measured)})  # fmt: skip
    for row in rows:
        # end to end, every variant reads the same texts; its label's mean token count differs with the vocabulary
        # (a trimmed one splits words otherwise), so those rows match the baseline by mode and batch alone
        base = next(r for r in rows if r["variant"] == BASELINE and r["mode"] == row["mode"]
                    and r["batch_size"] == row["batch_size"]
                    and (row["mode"] == END_TO_END or r["seq_length"] == row["seq_length"]))  # fmt: skip
        row["vs_paddle_fp32"] = row["throughput"] / base["throughput"]
    return rows


def repeated(variants: Sequence[Candidate], names: Sequence[str]) -> list[Candidate]:
    """The variants plus a second copy of each named one (`<name>#2`), timed as a variant of its own: the two rows
    of the same export show what the stated spread is worth."""
    by_name = {variant.name: variant for variant in variants}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise UserError(f"--repeat_variants: no variant '{unknown[0]}' here (variants: {', '.join(by_name)})")
    return [*variants, *(dataclasses.replace(by_name[name], name=f"{name}{REPEAT_SUFFIX}") for name in dict.fromkeys(names))]


def measure_end_to_end(predictor, examples: list[dict], min_seconds: float) -> dict:
    """Raw examples → results through the Predictor, after one warm-up pass; latency per batch of examples."""
    predictor.predict(examples[: predictor.batch_size])
    latencies, count = [], 0
    started = time.perf_counter()
    while not latencies or time.perf_counter() - started < min_seconds:
        for start in range(0, len(examples), predictor.batch_size):
            tick = time.perf_counter()
            predictor.predict(examples[start : start + predictor.batch_size])
            latencies.append(time.perf_counter() - tick)
        count += len(examples)
    encoded = predictor.task.encode(examples, predictor.tokenizer, predictor.max_seq_length)
    mean_length = float(np.mean([len(f["input_ids"]) for f in encoded.features]))
    return {
        "throughput": count / sum(latencies),
        **latency_percentiles(latencies, LATENCY_PERCENTILES),
        "iterations": len(latencies),
        "seq_length": f"texts (mean {mean_length:.0f} tokens)",
    }


def measure_candidate(
    candidate: Candidate, examples: list[dict], batch_sizes: Sequence[int], num_threads: int, min_seconds: float
) -> dict[int, dict]:
    """End-to-end figures of one candidate at each batch size (batch 1: per-request latency; a large batch:
    throughput), through the Predictor on the candidate's own backend and precision: {batch size: figures}."""
    measured = {}
    for batch in batch_sizes:
        predictor = predictor_for(candidate, batch, num_threads)
        measured[batch] = measure_end_to_end(predictor, examples, min_seconds)
        del predictor
    return measured


def markdown_table(rows: list[dict], num_threads: int, rounds: int = DEFAULT_ROUNDS) -> str:
    lines = [
        f"# Inference benchmark ({num_threads} CPU threads)",
        "",
        "Model-only rows time the engine on random ids of the given length; end-to-end rows time the Predictor "
        "(tokenization + model + the task's decoding) on the texts file. Each round times every variant once, in "
        f"rotated order; throughput: median and range (lowest–highest) over {rounds} round(s), latencies: medians. "
        "Variants whose ranges overlap are not told apart by this run.",
        "",
        "| variant | engine | precision | mode | batch | seq len | throughput (seq/s): median (range) | × paddle FP32 | p50 latency (ms) | p99 latency (ms) | size (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        throughput = f"{r['throughput']:.1f} ({r['throughput_low']:.1f}–{r['throughput_high']:.1f})"
        lines.append(
            f"| {r['variant']} | {r['backend']} | {r['precision']} | {r['mode']} | {r['batch_size']} | {r['seq_length']} | {throughput} | "
            f"{r['vs_paddle_fp32']:.2f} | {r['latency_p50_ms']:.1f} | {r['latency_p99_ms']:.1f} | {r['size_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys((r["mode"], r["batch_size"], r["seq_length"]) for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    colours = {"fp32": "#4c72b0", "bf16": "#55a868", "int8": "#dd8452"}
    figure, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 4), squeeze=False)
    for axis, (mode, batch, seq) in zip(axes[0], shapes):
        found = [next(r for r in rows if r["variant"] == v and r["mode"] == mode
                      and r["batch_size"] == batch and r["seq_length"] == seq) for v in variants]  # fmt: skip
        values = [r["throughput"] for r in found]
        errors = [[r["throughput"] - r["throughput_low"] for r in found], [r["throughput_high"] - r["throughput"] for r in found]]
        bars = axis.bar(range(len(variants)), values, yerr=errors, ecolor="#333333", capsize=2,
                        color=[colours.get(v.split("#")[0].rsplit("-", 1)[-1], "#8172b2") for v in variants])  # fmt: skip
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
        axis.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
        axis.set_title(f"{mode}, batch {batch}, seq {seq}" if mode == MODEL_ONLY else f"{mode}, batch {batch}", fontsize=9)
        axis.set_ylabel("sequences / s")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parameter_count(shape: dict, vocab_size: int) -> int:
    """Parameters of an ERNIE encoder of this shape (embeddings + layers), for the cost estimate."""
    hidden, inner, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    embeddings = (vocab_size + 512 + 4) * hidden
    per_layer = 4 * hidden * hidden + 2 * hidden * inner
    return embeddings + layers * per_layer


# Measured for the medium shape (74M parameters) on a shared 2-core EPYC: building the variants took 10-14 min, the
# process held about 4 GB, and 3.1 GB landed on disk (~11 copies of the FP32 weights: float, pruned, PTQ models,
# DynaBERT checkpoints, OpenVINO IR, ONNX); timing takes ~20 s per variant × shape × round on top of --min_seconds.
MEDIUM_PARAMETERS = 74_000_000
BUILD_MINUTES_MEDIUM, PEAK_GB_MEDIUM, FLOAT_COPIES_ON_DISK = 12.0, 4.0, 11


def max_positions(compress_dir: Optional[str]) -> int:
    """The longest sequence the benchmarked models take: the random model's table, else what the compress dir's
    float model records (read before hours of work, so that a bad --seq_lengths fails at once)."""
    if compress_dir is None:
        return RANDOM_MAX_POSITIONS
    float_dir = os.path.join(compress_dir, layout.FLOAT_DIR)
    if not os.path.isfile(os.path.join(float_dir, layout.TASK_INFO_FILE)):
        return ERNIE_MAX_POSITIONS  # not a compress output: variants_of says so
    from ernie3.model_files import read_task_info

    return read_task_info(float_dir).get("max_position_embeddings") or ERNIE_MAX_POSITIONS


#: one batch-32 × seq-128 FP32 run of the medium shape on 2 cores (≈ 17 seq/s, STACK.md), and the time to create
#: and load an engine; both scale with the model's parameters
MEDIUM_SECONDS_PER_BATCH32 = 1.9
CREATE_SECONDS_MEDIUM = 3.0


def timing_seconds(args: argparse.Namespace, parameters: int, variants: int, warmup: int = 3) -> float:
    """Roughly how long the timing takes (FP32 speed: the other variants are faster, so an upper figure): per
    round and variant, each shape's warm-up and at least --iterations runs and --min_seconds, plus the end-to-end
    pass over --e2e_examples texts at the largest batch."""
    scale = parameters / MEDIUM_PARAMETERS

    def one_call(batch: int, seq: int) -> float:
        return MEDIUM_SECONDS_PER_BATCH32 * scale * batch * seq / (32 * 128)

    create = max(CREATE_SECONDS_MEDIUM * scale, 0.2)
    per_variant = create
    for batch in args.batch_sizes:
        for seq in args.seq_lengths:
            call = one_call(batch, seq)
            per_variant += warmup * call + max(args.min_seconds, args.iterations * call)
    if args.texts_file.lower() != "none":
        batch = max(args.batch_sizes)
        passes = -(-args.e2e_examples // batch) * one_call(batch, 128)
        per_variant += create + passes + max(args.min_seconds, passes)
    return args.rounds * variants * per_variant


def cost_estimate(args: argparse.Namespace, parameters: int, variants: int, building: bool) -> str:
    """What the run will cost, said before the long part starts; `building`: a random model is built first."""
    lines = [f"benchmark: {variants} variants × batch {args.batch_sizes} × seq {args.seq_lengths} "
             f"(+ end-to-end), {args.rounds} interleaved round(s), {args.num_threads} threads"]  # fmt: skip
    if building:
        scale = parameters / MEDIUM_PARAMETERS
        disk_gb = parameters * 4 * FLOAT_COPIES_ON_DISK / 2**30
        lines.append(f"  building a random model of {parameters / 1e6:.0f}M parameters and its variants: about "
                     f"{format_duration(BUILD_MINUTES_MEDIUM * scale * 60)}, peak memory about "
                     f"{max(PEAK_GB_MEDIUM * scale, 1.0):.1f} GB, {disk_gb:.1f} GB on disk in {args.output_dir}/models "
                     f"({'kept' if args.keep_models else 'deleted at the end; --keep_models keeps them'})")  # fmt: skip
    lines.append(f"  timing: up to about {format_duration(timing_seconds(args, parameters, variants))} on a 2-core "
                 f"machine for a model of {parameters / 1e6:.1f}M parameters (less on a faster one)")  # fmt: skip
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    from ernie3.backends import cpu_has_native_bf16
    from ernie3.data import sample_file

    parser = argparse.ArgumentParser(prog="ernie3 bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compress_dir", help="a compress_*.py output dir (default: build a random medium model)")
    parser.add_argument("--output_dir", default="bench_output")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seq_lengths", type=int, nargs="+", default=[128])
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5, help="timed runs per variant and shape (at least)")
    parser.add_argument("--min_seconds", type=float, default=3.0, help="time each variant and shape at least this long")
    parser.add_argument("--timing_rounds", "--rounds", dest="rounds", type=int, default=DEFAULT_ROUNDS,
                        help="measure every variant this many times, interleaved (each round times every variant "
                             "once, in rotated order); rows give the median and the range over the rounds")  # fmt: skip
    parser.add_argument("--repeat_variants", nargs="+", default=[], metavar="VARIANT",
                        help="time these variants twice, as rows VARIANT and VARIANT#2 (same export): a check of "
                             "what the stated spread is worth on this machine")  # fmt: skip
    parser.add_argument("--texts_file", default=sample_file("tnews", "dev"),
                        help="TNEWS-format texts for the end-to-end rows (e.g. ../shared/data/tnews/dev.json); "
                             "'none' skips them")  # fmt: skip
    parser.add_argument("--e2e_examples", type=int, default=128, help="texts per end-to-end pass")
    parser.add_argument("--keep_models", action="store_true",
                        help="keep the models this run built under OUTPUT/models and OUTPUT/onnx (default: delete them "
                             "at the end; nothing else is ever deleted)")  # fmt: skip
    parser.add_argument("--hidden_size", type=int, default=MEDIUM_SHAPE["hidden_size"])
    parser.add_argument("--num_hidden_layers", type=int, default=MEDIUM_SHAPE["num_hidden_layers"])
    parser.add_argument("--num_attention_heads", type=int, default=MEDIUM_SHAPE["num_attention_heads"])
    parser.add_argument("--intermediate_size", type=int, default=MEDIUM_SHAPE["intermediate_size"])
    parser.add_argument("--vocab_size", type=int, default=ERNIE_VOCAB_SIZE)
    args = parser.parse_args(argv)
    if min(args.batch_sizes) < 1 or min(args.seq_lengths) < 3:
        raise UserError("--batch_sizes must be >= 1 and --seq_lengths >= 3")
    if args.rounds < 1 or args.e2e_examples < 1:
        raise UserError("--timing_rounds and --e2e_examples must be at least 1")
    check_positive(args, "num_threads", "iterations", *MEDIUM_SHAPE, "vocab_size")
    # NaN passes every comparison (the timing loop would stop at --iterations whatever --min_seconds says)
    check_number(args, "min_seconds", 0, 3600)
    if args.hidden_size % args.num_attention_heads:
        raise UserError(f"--hidden_size {args.hidden_size} must be a multiple of --num_attention_heads "
                        f"{args.num_attention_heads}")  # fmt: skip
    use_texts = args.texts_file.lower() != "none"
    if use_texts and not os.path.isfile(args.texts_file):
        raise UserError(f"--texts_file: file not found: {args.texts_file}")
    if args.compress_dir is not None and not os.path.isdir(args.compress_dir):
        raise UserError(f"--compress_dir: directory not found: {args.compress_dir}")
    limit = max_positions(args.compress_dir)
    if max(args.seq_lengths) > limit:
        where = args.compress_dir or "the random model this command builds"
        raise UserError(f"--seq_lengths {max(args.seq_lengths)} is longer than the {limit} positions of {where}")

    bf16 = cpu_has_native_bf16()
    shape = {k: getattr(args, k) for k in MEDIUM_SHAPE}
    if args.compress_dir is None:  # the build is the long part: said before it
        print(cost_estimate(args, parameter_count(shape, args.vocab_size), (12 if bf16 else 9) +
                            len(set(args.repeat_variants)), building=True), flush=True)  # fmt: skip
    os.makedirs(args.output_dir, exist_ok=True)
    # only what this run creates is ever deleted: directories that did not exist before it
    built = [d for d in (os.path.join(args.output_dir, "models"), os.path.join(args.output_dir, "onnx"))
             if not os.path.exists(d)]  # fmt: skip
    started = time.time()
    try:
        compress_dir = args.compress_dir
        if compress_dir is None:
            compress_dir = build_random_variants(os.path.join(args.output_dir, "models"), shape, args.vocab_size)
        variants = repeated(variants_of(compress_dir, os.path.join(args.output_dir, "onnx"), bf16), args.repeat_variants)
        if args.compress_dir is not None:  # the timing is the long part: said before it, for this model's size
            float_mb = candidate_size_mb(variants[0])
            print(cost_estimate(args, int(float_mb * 2**20 / 4), len(variants), building=False), flush=True)
        texts = None
        if use_texts:
            from ernie3.data import load_examples
            from ernie3.export import task_of_model_dir

            task = task_of_model_dir(os.path.join(compress_dir, layout.FLOAT_DIR))
            texts = load_examples(task, "dev", args.texts_file)[: args.e2e_examples]
        rows = run_benchmark(variants, args.batch_sizes, args.seq_lengths, args.num_threads, args.iterations,
                             args.min_seconds, args.vocab_size, rounds=args.rounds, texts=texts)  # fmt: skip
    finally:
        if not args.keep_models:
            for directory in built:
                shutil.rmtree(directory, ignore_errors=True)
    table = markdown_table(rows, args.num_threads, args.rounds)
    with open(os.path.join(args.output_dir, "benchmark.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    with open(os.path.join(args.output_dir, "benchmark.json"), "w", encoding="utf-8") as handle:
        json.dump({"settings": vars(args), "variants": [asdict(v) for v in variants], "rows": rows}, handle, indent=2)
    plot(rows, os.path.join(args.output_dir, "benchmark.png"))
    print(table)
    kept = "kept" if args.keep_models else "deleted"
    print(f"written: {args.output_dir}/benchmark.md, benchmark.json, benchmark.png ({time.time() - started:.0f} s); "
          f"models this run built: {kept}")  # fmt: skip
    return {"rows": rows, "table": table}


if __name__ == "__main__":
    run_cli(main)
