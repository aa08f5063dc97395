"""The fast tokenizer (ernie3/fast_tokenizer.py) against paddlenlp's ErnieTokenizer on the local CLUE dev sets.

    flock /tmp/bench.lock python scripts/bench_tokenizer.py --data_dir ../shared/data --output_file /tmp/tok.json

1. Identity: every text of every dataset found under --data_dir (TNEWS, AFQMC, IFLYTEK, OCNLI, CLUEWSC2020, CSL,
   CMRC2018 questions and contexts, MSRA-NER sentences), tokenized both ways with the real ERNIE 3.0 vocab: the share
   with identical ids (and, for QA contexts, identical character offsets), and the share of examples whose task
   features (task.encode at --max_seq_length: truncation, windows, word alignment) are identical.
2. Speed, in --rounds interleaved rounds (median and spread): tokenization alone and task features on TNEWS dev, in
   texts/s; then the end-to-end Predictor (tiny model with the real vocab, or --model_path) on TNEWS texts.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Optional

from ernie3.errors import UserError, run_cli

# task name → dev file under the data folder (the first that exists)
DATASETS = {
    "tnews": ["tnews/dev.json"],
    "afqmc": ["afqmc/dev.json"],
    "iflytek": ["iflytek/dev.json"],
    "ocnli": ["ocnli/dev.json"],
    "cmnli": ["cmnli/dev.json"],
    "cluewsc2020": ["cluewsc2020/dev.json"],
    "csl": ["csl/dev.json"],
    "cmrc2018": ["cmrc2018/cmrc2018_dev.json"],
    "msra_ner": ["msra_ner/test.tsv"],
}


def example_texts(task: Any, example: dict) -> list[tuple[str, str]]:
    """(kind, text) of every text the task tokenizes in one example."""
    if task.task_type == "qa":
        return [("question", example["question"]), ("context", example["context"])]
    if task.task_type == "token_cls":
        return [("sentence", "".join(example["tokens"]))]
    return [(key, example[key]) for key in ("text_a", "text_b") if example.get(key) is not None]


def check_identity(task: Any, examples: list[dict], slow: Any, fast: Any, max_seq_length: int) -> dict:
    """Identical ids per text kind, offsets per QA context, and identical task features per example."""
    counts: dict[str, list[int]] = {}
    first_difference: Optional[str] = None
    seen_contexts: set[str] = set()
    for example in examples:
        for kind, text in example_texts(task, example):
            if kind == "context":
                if text in seen_contexts:
                    continue
                seen_contexts.add(text)
            same = fast.text_ids(text) == slow.convert_tokens_to_ids(slow.tokenize(text))
            counts.setdefault(kind, [0, 0])[0] += same
            counts[kind][1] += 1
            if kind == "context":
                same_offsets = fast.get_offset_mapping(text) == [tuple(s) for s in slow.get_offset_mapping(text)]
                counts.setdefault("context offsets", [0, 0])[0] += same_offsets
                counts["context offsets"][1] += 1
                same = same and same_offsets
            if not same and first_difference is None:
                first_difference = f"{kind}: {text[:60]!r}"
    same_features = 0
    for example in examples:  # one example at a time: the share of examples whose features are identical
        a, b = task.encode([example], slow, max_seq_length), task.encode([example], fast, max_seq_length)
        same_features += a.features == b.features and a.alignments == b.alignments
    shares = {kind: {"identical": same, "total": total, "share": same / total} for kind, (same, total) in counts.items()}
    shares["features"] = {"identical": same_features, "total": len(examples), "share": same_features / len(examples)}
    return {"texts": shares, "first_difference": first_difference}


def timed_rounds(variants: dict[str, Callable[[], int]], rounds: int) -> dict[str, dict]:
    """Each variant once per round, interleaved; items/s per round, median and spread."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            count = run()
            rates[name].append(count / (time.perf_counter() - started))
    return {name: {"median": statistics.median(r), "min": min(r), "max": max(r), "rounds": [round(x, 1) for x in r]}
            for name, r in rates.items()}  # fmt: skip


def tiny_export(vocab_file: str, work_dir: str) -> str:
    """A 2-layer hidden-64 model with the real vocab, one training step on the TNEWS sample, exported."""
    from ernie3.data import sample_file
    from ernie3.modeling import build_tiny_model
    from ernie3.train import run

    model_dir = build_tiny_model(os.path.join(work_dir, "tiny"), vocab_file=vocab_file)
    summary = run("seq_cls", [
        "--task_name", "tnews", "--model_name_or_path", model_dir, "--output_dir", os.path.join(work_dir, "out"),
        "--train_file", sample_file("tnews", "train"), "--dev_file", sample_file("tnews", "dev"),
        "--max_steps", "1", "--per_device_train_batch_size", "8", "--evaluation_strategy", "no",
        "--save_strategy", "no", "--load_best_model_at_end", "false", "--do_train", "--do_export",
    ])  # fmt: skip
    return summary["export_dir"]


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--data_dir", default=os.path.normpath(os.path.join(repo, "..", "shared", "data")))
    parser.add_argument("--vocab_file", help="default: DATA_DIR/vocab/ernie-3.0-zh-vocab.txt")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model_path", help="an exported TNEWS model for the Predictor timing (default: a tiny one)")
    parser.add_argument("--predictor_texts", type=int, default=2000, help="TNEWS texts per Predictor round")
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--output_file", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        raise UserError(f"--rounds must be at least 3 (median and spread), got {args.rounds}")
    if args.max_seq_length < 8 or args.predictor_texts < 1 or args.num_threads < 1:
        raise UserError("--max_seq_length must be >= 8, --predictor_texts and --num_threads >= 1")
    vocab_file = args.vocab_file or os.path.join(args.data_dir, "vocab", "ernie-3.0-zh-vocab.txt")
    if not os.path.isfile(vocab_file):
        raise UserError(f"vocab file not found: {vocab_file}")

    from paddlenlp.transformers import AutoTokenizer, ErnieTokenizer

    from ernie3.data import load_examples
    from ernie3.fast_tokenizer import FastErnieTokenizer
    from ernie3.logs import quiet_library_loggers
    from ernie3.predict import Predictor
    from ernie3.tasks import get_task

    quiet_library_loggers()
    with tempfile.TemporaryDirectory() as work_dir:
        ErnieTokenizer(vocab_file).save_pretrained(work_dir)
        slow = AutoTokenizer.from_pretrained(work_dir)  # as a predictor loads it (special tokens kept whole)
        started = time.perf_counter()
        fast = FastErnieTokenizer(slow)
        report: dict = {"vocab_file": vocab_file, "fast_build_seconds": round(time.perf_counter() - started, 2),
                        "identity": {}}  # fmt: skip

    examples_of = {}
    for name, candidates in DATASETS.items():
        path = next((os.path.join(args.data_dir, c) for c in candidates if os.path.isfile(os.path.join(args.data_dir, c))), None)
        if path is None:
            report["identity"][name] = "not available"
            continue
        task = get_task(name)
        examples = load_examples(task, "dev", path)
        examples_of[name] = (task, examples)
        report["identity"][name] = check_identity(task, examples, slow, fast, args.max_seq_length)
        shares = report["identity"][name]["texts"]
        print(f"{name:12s} " + ", ".join(f"{kind} {s['identical']}/{s['total']} ({s['share']:.2%})" for kind, s in shares.items()),
              flush=True)  # fmt: skip
        if report["identity"][name]["first_difference"]:
            print(f"{'':12s} first difference: {report['identity'][name]['first_difference']}", flush=True)

    if "tnews" not in examples_of:
        raise UserError(f"TNEWS dev is not under {args.data_dir}: nothing to time")
    task, examples = examples_of["tnews"]
    texts = [e["text_a"] for e in examples]
    report["tokenize_texts_per_s"] = timed_rounds({
        "paddlenlp": lambda: sum(1 for t in texts if slow.convert_tokens_to_ids(slow.tokenize(t))),
        "fast": lambda: sum(1 for t in texts if fast.text_ids(t) is not None),
    }, args.rounds)  # fmt: skip
    report["features_texts_per_s"] = timed_rounds({
        "paddlenlp": lambda: len(task.encode(examples, slow, args.max_seq_length).features),
        "fast": lambda: len(task.encode(examples, fast, args.max_seq_length).features),
    }, args.rounds)  # fmt: skip

    with tempfile.TemporaryDirectory() as work_dir:
        model_path = args.model_path or tiny_export(vocab_file, work_dir)
        predictors = {choice: Predictor(model_path, tokenizer=choice, num_threads=args.num_threads)
                      for choice in ("paddlenlp", "fast")}  # fmt: skip
        inputs = [texts[k % len(texts)] for k in range(args.predictor_texts)]
        results = {choice: p.predict_texts(inputs) for choice, p in predictors.items()}  # also warms up every shape
        report["predictor_identical_results"] = results["fast"] == results["paddlenlp"]
        report["predictor_texts_per_s"] = timed_rounds(
            {choice: (lambda p=p: len(p.predict_texts(inputs))) for choice, p in predictors.items()}, args.rounds
        )
        report["predictor_model"] = args.model_path or "tiny 2-layer hidden-64 ERNIE, real vocab, 1 training step"
    for what in ("tokenize_texts_per_s", "features_texts_per_s", "predictor_texts_per_s"):
        figures = report[what]
        ratio = figures["fast"]["median"] / figures["paddlenlp"]["median"]
        print(f"{what}: " + "; ".join(f"{name} {f['median']:.0f} (range {f['min']:.0f}-{f['max']:.0f})"
                                     for name, f in figures.items()) + f"; fast/paddlenlp {ratio:.2f}x", flush=True)  # fmt: skip
    print(f"predictor results identical: {report['predictor_identical_results']}")
    if args.output_file:
        with open(args.output_file, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=1)
    return report


if __name__ == "__main__":
    run_cli(main)
