"""Issue 20's light-weight targets, measured on real TNEWS or MSRA_NER with the real ERNIE 3.0 vocabulary.

    nice -n 19 python scripts/lightweight_real_data.py --output_dir /tmp/lw_tnews                  # full size
    nice -n 19 python scripts/lightweight_real_data.py --task msra_ner --output_dir /tmp/lw_msra    # full size
    python scripts/lightweight_real_data.py --dry_run --output_dir /tmp/lw_dry                     # samples, tiny model

Stages (each skipped when its output is already there, so a re-run resumes):
1. data: lines 1..--train_lines of the task's real file (tnews/dev.json; msra_ner/test.tsv, a sentence a line) as
   train, the next --dev_lines as held-out dev, written into OUTPUT/data (never into the repository);
2. teacher: a randomly initialised model of the medium shape (6L-768H-12 heads) with the real vocabulary,
   fine-tuned on the train slice (OUTPUT/teacher, exported);
3. compress: `distill+ptq` to a nano-shape student (+ the label-only baseline), --prune_vocab, INT8 embeddings,
   --optimize_for size (OUTPUT/compress, report.json / report.md);
4. benchmark, in one run: the teacher's FP32 export (Paddle oneDNN) vs the picked candidate — model only at batch
   32 × seq 128 and batch 1 on random in-vocabulary ids, end to end on the held-out examples (Predictor), and the
   same end to end with the paddlenlp tokenizer (the fast tokenizer's factor);
5. OUTPUT/lightweight.json and OUTPUT/lightweight.md: the figures against the targets.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Optional, Sequence

from ernie3.errors import UserError, run_cli  # the package is installed (make install)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VOCAB = os.path.join("vocab", "ernie-3.0-zh-vocab.txt")
#: per task: its real file under --data_dir, the default split (lines) and the teacher's training length
REAL_DATA = {
    "tnews": {"file": os.path.join("tnews", "dev.json"), "train_lines": 8000, "dev_lines": 2000,
              "teacher_max_seq_length": 64},  # titles fit in 64
    "msra_ner": {"file": os.path.join("msra_ner", "test.tsv"), "train_lines": 2800, "dev_lines": 642,
                 "teacher_max_seq_length": 128},  # 3442 sentences, up to a few hundred characters
}  # fmt: skip
MEDIUM = {"hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 3072}
#: --dry_run: the shipped samples and a tiny teacher, for the test of this script
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256}
#: the issue's targets (ratios against the teacher's FP32 export / predictor)
TARGETS = {"max_metric_drop": 0.01, "size_share": 0.03, "rss_share": 0.20, "model_speedup": 20.0, "e2e_speedup": 10.0, "trimmed_agreement": 0.995}


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(REAL_DATA), default="tnews")
    parser.add_argument("--data_dir", default=os.path.join(REPO, "..", "shared", "data"))
    parser.add_argument("--output_dir", required=True, help="everything the run writes goes here")
    parser.add_argument("--train_lines", type=int, help="lines 1..N of the task's file are the train set "
                        "(default: tnews 8000 of dev.json, msra_ner 2800 of test.tsv)")
    parser.add_argument("--dev_lines", type=int, help="the next N lines are the held-out dev set "
                        "(default: tnews 2000, msra_ner 642: the rest of the file)")
    parser.add_argument("--teacher_steps", type=int, default=250,
                        help="fine-tuning steps of the teacher (the task type's batch in config.yml: 32, NER 16)")
    parser.add_argument("--teacher_learning_rate", type=float, default=1e-4)
    parser.add_argument("--distill_steps", type=int, default=250, help="distillation (and baseline) steps")
    parser.add_argument("--distill_batch_size", type=int, default=32,
                        help="train batch of the distillation, the baseline and the student's importance batches")
    parser.add_argument("--distill_learning_rate", type=float, default=5e-4)
    parser.add_argument("--distill_augment", type=int, default=4,
                        help="augmented copies per train example that the teacher labels (0: the train set alone)")
    parser.add_argument("--distill_temperature", type=float, default=1.0)
    parser.add_argument("--distill_label_weight", type=float, default=0.0)
    parser.add_argument("--vocab_fill", choices=["order", "none"], default="order",
                        help="--prune_vocab beyond the train texts' tokens: the vocabulary's first tokens, or none")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="compress/bench length (TNEWS titles fit in 64; 128 keeps the trimmed position table "
                             "long enough for the batch 32 × seq 128 benchmark)")
    parser.add_argument("--teacher_max_seq_length", type=int, help="default: tnews 64, msra_ner 128")
    parser.add_argument("--max_vocab_size", type=int, default=6000)
    parser.add_argument("--engines", nargs="+", default=["paddle", "openvino"])
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--min_seconds", type=float, default=3.0, help="benchmark: time each row at least this long")
    parser.add_argument("--e2e_examples", type=int, default=256, help="benchmark: held-out texts per end-to-end pass")
    parser.add_argument("--dry_run", action="store_true",
                        help="the shipped TNEWS samples and a tiny teacher with a generated vocabulary, a few steps")
    args = parser.parse_args(argv)
    for name, default in REAL_DATA[args.task].items():
        if name != "file" and getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("train_lines", "dev_lines", "teacher_steps", "distill_steps", "distill_batch_size", "max_seq_length",
                 "teacher_max_seq_length", "max_vocab_size", "num_threads", "e2e_examples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.distill_augment <= 100:
        raise UserError(f"--distill_augment takes 0 to 100 copies, got {args.distill_augment}")
    if not (args.distill_label_weight >= 0 and args.distill_label_weight != float("inf")):
        raise UserError(f"--distill_label_weight must be a finite number >= 0, got {args.distill_label_weight}")
    for name in ("teacher_learning_rate", "distill_learning_rate", "distill_temperature", "min_seconds"):
        value = getattr(args, name)
        if not value > 0 or value == float("inf"):  # NaN fails too
            raise UserError(f"--{name} must be a positive number, got {value}")
    if not args.dry_run:
        for relative in (VOCAB, REAL_DATA[args.task]["file"]):
            if not os.path.isfile(os.path.join(args.data_dir, relative)):
                raise UserError(f"--data_dir: {os.path.join(args.data_dir, relative)} not found "
                                "(the shared data folder; --dry_run runs on the shipped samples)")
    if args.dry_run:  # minutes of a real run → seconds: a check that every stage runs, not a measurement
        args.teacher_steps = args.distill_steps = 5
        args.teacher_max_seq_length = args.max_seq_length = 64
        args.engines, args.min_seconds, args.e2e_examples = ["paddle"], 0.2, 32
        args.distill_augment = min(args.distill_augment, 1)
    output = os.path.abspath(args.output_dir)
    if os.path.isfile(output):
        raise UserError(f"--output_dir: {args.output_dir} is a file")
    if output == REPO or output.startswith(REPO + os.sep):
        raise UserError(f"--output_dir: {args.output_dir} is inside the repository; write the run elsewhere")
    return args


def write_slices(args: argparse.Namespace, data_dir: str) -> tuple[str, str]:
    """train.json / dev.json: consecutive line ranges of the source file (a dry run: the shipped samples)."""
    from ernie3.data import sample_file

    if args.dry_run:
        return sample_file(args.task, "train"), sample_file(args.task, "dev")
    source = REAL_DATA[args.task]["file"]
    with open(os.path.join(args.data_dir, source), encoding="utf-8") as handle:
        lines = handle.readlines()
    if args.train_lines + args.dev_lines > len(lines):
        raise UserError(f"--train_lines + --dev_lines = {args.train_lines + args.dev_lines} exceeds the "
                        f"{len(lines)} lines of {source}")
    os.makedirs(data_dir, exist_ok=True)
    extension = os.path.splitext(source)[1]  # the task's reader knows the format by it
    paths = os.path.join(data_dir, "train" + extension), os.path.join(data_dir, "dev" + extension)
    for path, chunk in zip(paths, (lines[: args.train_lines], lines[args.train_lines : args.train_lines + args.dev_lines])):
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(chunk)
    return paths


def teacher_argv(args: argparse.Namespace, init_dir: str, train: str, dev: str, out: str) -> list[str]:
    return ["--task_name", args.task, "--model_name_or_path", init_dir, "--train_file", train, "--dev_file", dev,
            "--max_seq_length", str(args.teacher_max_seq_length), "--max_steps", str(args.teacher_steps),
            "--learning_rate", str(args.teacher_learning_rate), "--warmup_ratio", "0.1", "--logging_steps", "10",
            "--do_train", "--do_eval", "--do_export", "--output_dir", out]  # fmt: skip


def compress_argv(args: argparse.Namespace, teacher_dir: str, train: str, dev: str, out: str) -> list[str]:
    # the tiny dry-run teacher is smaller than every named size: half of it
    student = ["--student_layers", "1", "--student_hidden", "32", "--student_heads", "2"] if args.dry_run else [
        "--student_size", "nano"]
    return ["--task_name", args.task, "--model_name_or_path", teacher_dir, "--train_file", train, "--dev_file", dev,
            "--max_seq_length", str(args.max_seq_length), "--strategy", "distill+ptq", *student,
            "--distill_baseline", "--distill_augment", str(args.distill_augment),
            "--distill_temperature", str(args.distill_temperature),
            "--distill_label_weight", str(args.distill_label_weight), "--max_steps", str(args.distill_steps),
            "--per_device_train_batch_size", str(args.distill_batch_size),
            "--learning_rate", str(args.distill_learning_rate), "--prune_vocab", "--max_vocab_size",
            str(args.max_vocab_size), "--vocab_fill", args.vocab_fill, "--int8_embeddings", "true", "--optimize_for", "size", "--algo_list", "hist",
            "--batch_size_list", "8", "--engines", *args.engines, "--nncf_accuracy_control", "false",
            "--num_threads", str(args.num_threads), "--measure_rss", str(not args.dry_run).lower(),
            "--output_dir", out]  # fmt: skip


def smallest_student(report: dict) -> Optional[dict]:
    """The smallest candidate built from the distilled student, when it is not the pick (e.g. outside the drop)."""
    students = [c for c in report["candidates"] if c["name"] == "student" or c["name"].startswith("student/")]
    smallest = min(students, key=lambda c: c["size_mb"], default=None)
    return smallest if smallest is not None and smallest["name"] != report["best"] else None


def benchmark(args: argparse.Namespace, teacher_export: str, best: dict, vocab_size: int, dev: str,
              student: Optional[dict] = None) -> dict:
    """Teacher FP32 vs the picked candidate (and the smallest student candidate when it is another) on identical
    inputs, in one run; + the tokenizer factor end to end."""
    from ernie3.cli.bench import BASELINE, END_TO_END, MODEL_ONLY, measure_end_to_end, run_benchmark
    from ernie3.data import load_examples
    from ernie3.layout import Candidate
    from ernie3.predict import Predictor
    from ernie3.tasks import get_task

    texts = load_examples(get_task(args.task), "dev", dev)[: args.e2e_examples]
    teacher = Candidate(BASELINE, teacher_export, "model.pdmodel", "paddle", "fp32")
    picked = Candidate("picked", best["path"], best["model_file"], best["backend"], best["precision"])
    variants = [teacher, picked]
    if student is not None:
        variants.append(Candidate("student", student["path"], student["model_file"], student["backend"],
                                  student["precision"]))  # fmt: skip
    # ids below the trimmed vocabulary's size are valid for every model
    rows = run_benchmark(variants, [1, 32], [args.max_seq_length], args.num_threads, iterations=3,
                         min_seconds=args.min_seconds, vocab_size=vocab_size, texts=texts)  # fmt: skip
    tokenizers = {}
    for choice in ("fast", "paddlenlp"):
        predictor = Predictor(picked.path, backend=picked.backend, precision=picked.precision,
                              model_prefix=picked.model_prefix, num_threads=args.num_threads, batch_size=32,
                              tokenizer=choice)  # fmt: skip
        tokenizers[choice] = measure_end_to_end(predictor, texts, args.min_seconds)["throughput"]
        del predictor

    def row(variant: str, mode: str, batch: int) -> dict:
        return next(r for r in rows if r["variant"] == variant and r["mode"] == mode and r["batch_size"] == batch)

    figures = {}
    if student is not None:
        from ernie3.lightweight import measure_peak_rss

        rss = student.get("peak_rss_mb")
        if rss is None and not args.dry_run:
            rss = measure_peak_rss(variants[-1], 32, args.num_threads)
        figures["student_candidate"] = {
            "name": student["name"], "metric": student["metric"], "size_mb": student["size_mb"], "peak_rss_mb": rss,
            "agreement_with_teacher": student["agreement_with_float"],
            "model_speedup": row("student", MODEL_ONLY, 32)["vs_paddle_fp32"],
            "e2e_speedup": row("student", END_TO_END, 32)["vs_paddle_fp32"],
            "batch1_p50_ms": row("student", MODEL_ONLY, 1)["latency_p50_ms"],
        }  # fmt: skip
    return {
        **figures,
        "rows": rows,
        "model_speedup": row("picked", MODEL_ONLY, 32)["vs_paddle_fp32"],
        "e2e_speedup": row("picked", END_TO_END, 32)["vs_paddle_fp32"],
        "teacher_model_throughput": row(BASELINE, MODEL_ONLY, 32)["throughput"],
        "picked_model_throughput": row("picked", MODEL_ONLY, 32)["throughput"],
        "teacher_e2e_throughput": row(BASELINE, END_TO_END, 32)["throughput"],
        "picked_e2e_throughput": row("picked", END_TO_END, 32)["throughput"],
        "teacher_batch1_p50_ms": row(BASELINE, MODEL_ONLY, 1)["latency_p50_ms"],
        "picked_batch1_p50_ms": row("picked", MODEL_ONLY, 1)["latency_p50_ms"],
        "tokenizer_e2e_throughput": tokenizers,
        "fast_tokenizer_factor": tokenizers["fast"] / tokenizers["paddlenlp"],
    }


def summarize(report: dict, bench: dict) -> dict:
    rows = {r["name"]: r for r in report["candidates"]}
    teacher, best = rows["float"], rows[report["best"]]
    distillation = report.get("distillation", {}).get("models", {})
    student, baseline = distillation.get("student", {}), distillation.get("baseline", {})
    trimmed = rows.get("vocab_pruned", {})
    figures = {
        "best": report["best"], "teacher_metric": teacher["metric"], "best_metric": best["metric"],
        "teacher_size_mb": teacher["size_mb"], "best_size_mb": best["size_mb"],
        "size_share": best["size_mb"] / teacher["size_mb"],
        "teacher_peak_rss_mb": teacher.get("peak_rss_mb"), "best_peak_rss_mb": best.get("peak_rss_mb"),
        "rss_share": (best["peak_rss_mb"] / teacher["peak_rss_mb"]
                      if best.get("peak_rss_mb") and teacher.get("peak_rss_mb") else None),
        "best_agreement_with_teacher": best["agreement_with_float"],
        "student_metric": student.get("metric"), "student_agreement_with_teacher": student.get("agreement_with_teacher"),
        "baseline_metric": baseline.get("metric"),
        "baseline_agreement_with_teacher": baseline.get("agreement_with_teacher"),
        "student_vs_baseline": report.get("distillation", {}).get("student_vs_baseline"),
        "augmented_features": report.get("distillation", {}).get("augmented_features"),
        "trimmed_agreement": trimmed.get("agreement_with_float"), "vocabulary": report["settings"].get("vocabulary"),
        **{k: v for k, v in bench.items() if k != "rows"},
    }  # fmt: skip
    figures["targets"] = {
        "size ≤ 3% of teacher FP32": figures["size_share"] <= TARGETS["size_share"],
        "peak RSS ≤ 20% of teacher FP32 predictor": figures["rss_share"] is not None
        and figures["rss_share"] <= TARGETS["rss_share"],
        "≥ 20× model-only throughput": figures["model_speedup"] >= TARGETS["model_speedup"],
        "≥ 10× end to end": figures["e2e_speedup"] >= TARGETS["e2e_speedup"],
        "distilled nano beats labels-only nano": figures["student_metric"] is not None
        and figures["baseline_metric"] is not None and figures["student_metric"] > figures["baseline_metric"],
        "trimmed agrees ≥ 99.5% with untrimmed": figures["trimmed_agreement"] is not None
        and figures["trimmed_agreement"] >= TARGETS["trimmed_agreement"],
        "picked candidate within 1% of the teacher":
        best["metric"] >= teacher["metric"] * (1 - TARGETS["max_metric_drop"]) - 1e-12,
    }  # fmt: skip
    return figures


def markdown(f: dict, scale: str, task_name: str) -> str:
    from ernie3.tasks import get_task

    metric = get_task(task_name).metric_name

    def num(value, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    lines = [
        f"Light-weight path on real {task_name.upper()} ({scale}); picked (`--optimize_for size`): `{f['best']}`", "",
        "| | teacher FP32 | picked | ratio | target |", "|---|---|---|---|---|",
        f"| size on disk (MB) | {f['teacher_size_mb']:.1f} | {f['best_size_mb']:.2f} | {f['size_share']:.2%} | ≤ 3% |",
        f"| predictor peak RSS (MB, measured) | {num(f['teacher_peak_rss_mb'], '.0f')} | "
        f"{num(f['best_peak_rss_mb'], '.0f')} | {num(f['rss_share'], '.1%')} | ≤ 20% |",
        f"| model only, batch 32 × seq {f['seq_length']} (seq/s) | {f['teacher_model_throughput']:.1f} | "
        f"{f['picked_model_throughput']:.1f} | {f['model_speedup']:.1f}× | ≥ 20× |",
        f"| end to end, {task_name.upper()} texts, batch 32 (texts/s) | {f['teacher_e2e_throughput']:.1f} | "
        f"{f['picked_e2e_throughput']:.1f} | {f['e2e_speedup']:.1f}× | ≥ 10× |",
        f"| batch 1 × seq {f['seq_length']} p50 (ms) | {f['teacher_batch1_p50_ms']:.1f} | {f['picked_batch1_p50_ms']:.2f} | "
        f"{f['teacher_batch1_p50_ms'] / f['picked_batch1_p50_ms']:.1f}× | – |",
        f"| {metric} (held-out) | {f['teacher_metric']:.4f} | {f['best_metric']:.4f} | "
        f"agreement {f['best_agreement_with_teacher']:.2%} | within 1% |", "",
        f"| student | {metric} | agreement with teacher |", "|---|---|---|",
        f"| distilled | {num(f['student_metric'], '.4f')} | {num(f['student_agreement_with_teacher'], '.2%')} |",
        f"| labels only | {num(f['baseline_metric'], '.4f')} | {num(f['baseline_agreement_with_teacher'], '.2%')} |",
        "", *comparison_lines(f, metric), *student_candidate_lines(f, metric),
        f"Vocabulary trimmed: agreement with the untrimmed teacher {num(f['trimmed_agreement'], '.2%')} (target ≥ 99.5%)"
        + (f"; {f['vocabulary']['vocab_size_before']} → {f['vocabulary']['vocab_size']} tokens, dev [UNK] "
           f"{f['vocabulary']['dev_unk_share_before']:.2%} → {f['vocabulary']['dev_unk_share']:.2%}"
           if f.get("vocabulary") else ""),
        f"Fast tokenizer, end to end on the picked model: {f['fast_tokenizer_factor']:.2f}× the paddlenlp tokenizer "
        f"({f['tokenizer_e2e_throughput']['fast']:.0f} vs {f['tokenizer_e2e_throughput']['paddlenlp']:.0f} texts/s)",
        "", "| target | reached |", "|---|---|",
        *[f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in f["targets"].items()],
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def comparison_lines(f: dict, metric: str) -> list[str]:
    """Distilled − labels-only with its paired bootstrap interval: whether the held-out examples show a difference."""
    c = f.get("student_vs_baseline")
    if not c:
        return []
    low, high = c["ci95"]
    verdict = "beyond the noise of the held-out examples" if c["beyond_noise"] else "within the noise: not shown"
    augmented = f" (distilled on {f['augmented_features']} teacher-labelled augmented copies too)" if f.get(
        "augmented_features") else ""
    return [f"Distilled − labels-only {metric}: {c['difference']:+.4f}, 95% paired bootstrap interval {low:+.4f} to "
            f"{high:+.4f}: {verdict}{augmented}", ""]


def student_candidate_lines(f: dict, metric: str) -> list[str]:
    """The smallest student candidate against the teacher, when it is not the pick."""
    c = f.get("student_candidate")
    if not c:
        return []
    within = c["metric"] >= f["teacher_metric"] * (1 - TARGETS["max_metric_drop"]) - 1e-12
    rss = "–" if not c["peak_rss_mb"] or not f["teacher_peak_rss_mb"] else (
        f"{c['peak_rss_mb']:.0f} MB ({c['peak_rss_mb'] / f['teacher_peak_rss_mb']:.1%})")
    return [
        f"Smallest student candidate `{c['name']}` ({'within' if within else 'outside'} the 1% drop, so "
        f"{'a tie on size lost' if within else 'not the pick'}): {c['size_mb']:.2f} MB "
        f"({c['size_mb'] / f['teacher_size_mb']:.2%} of the teacher), peak RSS {rss}, model only "
        f"{c['model_speedup']:.1f}×, end to end {c['e2e_speedup']:.1f}×, batch-1 p50 {c['batch1_p50_ms']:.2f} ms, "
        f"{metric} {c['metric']:.4f} (teacher {f['teacher_metric']:.4f}; agreement {c['agreement_with_teacher']:.2%})",
        "",
    ]


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from ernie3.compress import run as compress
    from ernie3.files import write_json_atomic, write_text_atomic
    from ernie3.modeling import build_tiny_model
    from ernie3.train import run as train

    out = os.path.abspath(args.output_dir)
    timings: dict[str, float] = {}
    started = time.time()
    train_file, dev_file = write_slices(args, os.path.join(out, "data"))  # checks the split before writing anything
    os.makedirs(out, exist_ok=True)
    init_dir, teacher_dir, compress_dir = (os.path.join(out, name) for name in ("teacher-init", "teacher", "compress"))
    if not os.path.isfile(os.path.join(init_dir, "config.json")):
        vocab = None if args.dry_run else os.path.join(args.data_dir, VOCAB)
        build_tiny_model(init_dir, vocab_file=vocab, vocab_size=None if args.dry_run else 40000,
                         **(TINY if args.dry_run else MEDIUM))  # fmt: skip
    if not os.path.isfile(os.path.join(teacher_dir, "export", "model.pdmodel")):
        train(None, teacher_argv(args, init_dir, train_file, dev_file, teacher_dir))
    timings["teacher_s"] = time.time() - started
    report_file = os.path.join(compress_dir, "report.json")
    if not os.path.isfile(report_file):
        compress(None, compress_argv(args, os.path.join(teacher_dir, "best"), train_file, dev_file, compress_dir))
    with open(report_file, encoding="utf-8") as handle:
        report = json.load(handle)
    timings["compress_s"] = time.time() - started - timings["teacher_s"]
    best = next(r for r in report["candidates"] if r["name"] == report["best"])
    vocabulary = report["settings"].get("vocabulary") or {}
    bench = benchmark(args, os.path.join(compress_dir, "float"), best, vocabulary.get("vocab_size", 20000), dev_file,
                      smallest_student(report))  # fmt: skip
    timings["bench_s"] = time.time() - started - timings["teacher_s"] - timings["compress_s"]
    figures = summarize(report, bench)
    figures["seq_length"] = args.max_seq_length
    scale = "dry run: shipped samples, tiny teacher" if args.dry_run else (
        f"train lines 1–{args.train_lines}, held-out {args.dev_lines}, teacher {args.teacher_steps} steps at "
        f"seq {args.teacher_max_seq_length}, distillation {args.distill_steps} steps × batch {args.distill_batch_size}"
        f" (--distill_augment {args.distill_augment})")  # fmt: skip
    result = {"settings": vars(args), "scale": scale, "figures": figures, "bench_rows": bench["rows"],
              "timings_s": {k: round(v, 1) for k, v in timings.items()}}  # fmt: skip
    write_json_atomic(os.path.join(out, "lightweight.json"), result)
    table = markdown(figures, scale, args.task)
    write_text_atomic(os.path.join(out, "lightweight.md"), table)
    print(table, flush=True)
    return result


if __name__ == "__main__":
    run_cli(main)
