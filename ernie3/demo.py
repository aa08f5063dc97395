"""The embedded default: the whole pipeline, offline, on a tiny model and the samples shipped in ernie3/samples.

For each task type (TNEWS classification, MSRA_NER tagging, CMRC2018 reading comprehension): fine-tune, evaluate,
predict the test file, export a static model, reload it with Paddle Inference and score it on the dev set again;
compress it (DynaBERT + the PTQ sweep, with its report); then infer.py on the compressed candidates (and, for TNEWS,
ONNX Runtime FP32/INT8), ending with one table.

    python -m ernie3.demo [--output_dir demo_output]
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Sequence

from ernie3.errors import run_cli


# A randomly initialised model needs a larger learning rate and more epochs than a pretrained one.
COMMON_ARGS = ["--learning_rate", "1e-3", "--logging_steps", "50", "--save_total_limit", "1", "--overwrite_output_dir"]
# (task type, task, fine-tuning flags, feature flags fine-tuning and compression share); sizes keep the whole
# demo within a few minutes on 2 CPU cores
STAGES = (
    ("seq_cls", "tnews", ["--num_train_epochs", "20", "--per_device_train_batch_size", "16"], []),
    ("token_cls", "msra_ner", ["--num_train_epochs", "15", "--per_device_train_batch_size", "16"],
     ["--max_seq_length", "64"]),
    # short windows, so that every sample context is cut into overlapping windows as real CMRC2018 contexts are
    ("qa", "cmrc2018", ["--num_train_epochs", "8", "--per_device_train_batch_size", "16",
                        "--per_device_eval_batch_size", "64"],
     ["--max_seq_length", "64", "--doc_stride", "24", "--max_query_length", "24"]),
)  # fmt: skip
# The default algorithm × batch-size PTQ sweep; DynaBERT distillation cut to a few steps for the demo.
COMPRESS_ARGS = ["--max_steps", "20", "--save_steps", "10", "--learning_rate", "1e-4", "--overwrite_output_dir",
                 "--per_device_train_batch_size", "16"]  # fmt: skip


def sample_file(task_name: str, split: str) -> str:
    from ernie3.data import sample_file as shipped

    path = shipped(task_name, split)
    if path is None:
        raise FileNotFoundError(f"no {split} sample for {task_name}")
    return path


def fine_tune(task_type: str, task_name: str, model_dir: str, output_dir: str, flags: Sequence[str]) -> dict:
    """Train, evaluate, predict and export one task on its samples, as run_<task type>.py would."""
    from ernie3.train import run

    argv = [
        "--task_name", task_name, "--model_name_or_path", model_dir, "--output_dir", output_dir,
        "--train_file", sample_file(task_name, "train"), "--dev_file", sample_file(task_name, "dev"),
        # the CMRC2018 sample, like the real data set, has no test split: predict the dev questions
        "--test_file", sample_file(task_name, "test" if task_type != "qa" else "dev"),
        "--do_train", "--do_eval", "--do_predict", "--do_export", *COMMON_ARGS, *flags,
    ]  # fmt: skip
    return run(task_type, argv)


def compress(task_type: str, task_name: str, best_model_dir: str, output_dir: str, flags: Sequence[str]) -> dict:
    """DynaBERT + the PTQ sweep + candidate report, as compress_<task type>.py would."""
    from ernie3.compress import run

    argv = [
        "--task_name", task_name, "--model_name_or_path", best_model_dir, "--output_dir", output_dir,
        "--train_file", sample_file(task_name, "train"), "--dev_file", sample_file(task_name, "dev"),
        *COMPRESS_ARGS, *flags,
    ]  # fmt: skip
    return run(task_type, argv)


def infer(model_path: str, dev_file: str) -> dict:
    """infer.py with --perf on one model."""
    from ernie3.cli.infer import main as infer_main

    return infer_main(["--model_path", model_path, "--dev_file", dev_file, "--perf", "--num_threads", "2"])


def inference_models(task_type: str, compress_dir: str, export_dir: str, output_dir: str) -> list[tuple[str, str]]:
    """(label, path) of what the final table runs: every TNEWS candidate plus its ONNX forms; best/ of the others."""
    import json

    from ernie3.onnx import export_onnx, quantize_onnx_dynamic

    if task_type != "seq_cls":
        return [("compress best/", os.path.join(compress_dir, "best"))]
    with open(os.path.join(compress_dir, "report.json"), encoding="utf-8") as handle:
        candidates = json.load(handle)["candidates"]
    models = [(c["name"], os.path.join(c["path"], c["model_file"])) for c in candidates]
    onnx_file = export_onnx(export_dir, os.path.join(output_dir, "onnx"))
    return models + [("float → ONNX", onnx_file), ("float → ONNX dynamic INT8", quantize_onnx_dynamic(onnx_file))]


def check_exported_model(export_dir: str, dev_file: str) -> dict:
    """Reload the exported static model with Paddle Inference and score it on the dev set."""
    from ernie3.data import load_examples
    from ernie3.predict import Predictor

    predictor = Predictor(export_dir, num_threads=2)
    examples = load_examples(predictor.task, "dev", dev_file)
    return predictor.task.score(examples, predictor.predict(examples))


def shown_metrics(task_name: str, metrics: dict, prefix: str = "") -> str:
    from ernie3.tasks import get_task

    return get_task(task_name).metric_summary(metrics, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_output", help="everything the demo writes goes here")
    args = parser.parse_args()

    from ernie3.modeling import build_tiny_model

    # what the run costs, said before it starts (measured on 2 cores)
    print(f"demo: fine-tune, export, compress and infer three tiny models on the shipped samples; about 3 minutes on "
          f"2 CPU cores, under 2 GB of memory and about 350 MB of disk in {args.output_dir}/", flush=True)
    started = time.time()
    model_dir = build_tiny_model(os.path.join(args.output_dir, "tiny-ernie"))
    rows = [("tiny model (random init, generated vocab)", model_dir)]
    final_rows = []
    for task_type, task_name, train_flags, feature_flags in STAGES:
        stage_started = time.time()
        task_dir = os.path.join(args.output_dir, task_name)
        result = fine_tune(task_type, task_name, model_dir, task_dir, [*train_flags, *feature_flags])
        static = check_exported_model(result["export_dir"], sample_file(task_name, "dev"))
        report = compress(task_type, task_name, result["best_model_dir"], os.path.join(task_dir, "compress"), feature_flags)
        print(report["markdown"], flush=True)
        for label, path in inference_models(task_type, os.path.join(task_dir, "compress"), result["export_dir"], task_dir):
            measured = infer(path, sample_file(task_name, "dev"))
            final_rows.append((task_name, label, measured["backend"], measured["precision"],
                               shown_metrics(task_name, measured["metrics"]),
                               f"{measured['perf']['model_throughput']:.0f}",
                               f"{measured['perf']['latency_p50_ms']:.1f}"))  # fmt: skip
        rows += [
            (f"{task_name} dev (Trainer)", shown_metrics(task_name, result["eval"], prefix="eval_")),
            (f"{task_name} dev (exported, Paddle Inference)", shown_metrics(task_name, static)),
            (f"{task_name} test predictions", result["predict_file"]),
            (f"{task_name} static inference model", result["export_dir"]),
            (f"{task_name} compressed (best: {report['best']})", report["best_dir"]),
            (f"{task_name} stage time", f"{time.time() - stage_started:.1f} s"),
        ]
    rows.append(("wall time", f"{time.time() - started:.1f} s"))
    width = max(len(name) for name, _ in rows)
    print("\n== ERNIE 3.0 toolkit demo: results ==")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    header = ("task", "model", "backend", "precision", "dev metric", "seq/s (model)", "p50 batch ms")
    print("\n== infer.py on the compressed candidates (CPU, 2 threads, batch 32) ==")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in final_rows:
        print("| " + " | ".join(row) + " |")

if __name__ == "__main__":
    run_cli(main)
