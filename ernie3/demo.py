"""The embedded default: the whole pipeline, offline, on a tiny model and the samples shipped in ernie3/samples.

    python -m ernie3.demo [--output_dir demo_output]
"""
from __future__ import annotations

import argparse
import os
import time

from ernie3.errors import run_cli

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")


def sample_file(task_name: str, split: str) -> str:
    return os.path.join(SAMPLES_DIR, task_name, f"{split}.json")


def fine_tune_seq_cls(model_dir: str, output_dir: str) -> dict:
    from ernie3.train import run

    argv = [
        "--task_name", "tnews", "--model_name_or_path", model_dir, "--output_dir", output_dir,
        "--train_file", sample_file("tnews", "train"), "--dev_file", sample_file("tnews", "dev"),
        "--test_file", sample_file("tnews", "test"),
        "--do_train", "--do_eval", "--do_predict", "--do_export", "--overwrite_output_dir",
        # a randomly initialised model needs a larger learning rate and more epochs than a pretrained one
        "--num_train_epochs", "20", "--learning_rate", "1e-3", "--per_device_train_batch_size", "16",
        "--logging_steps", "50", "--save_total_limit", "1",
    ]  # fmt: skip
    return run("seq_cls", argv)


def check_exported_model(export_dir: str, dev_file: str) -> float:
    """Reload the exported static model with Paddle Inference and score it on the dev set."""
    from ernie3.data import load_examples
    from ernie3.predict import Predictor

    predictor = Predictor(export_dir, num_threads=2)
    examples = load_examples(predictor.task, "dev", dev_file)
    predictions = predictor.predict(examples)
    correct = sum(predictor.task.labels[e["label"]] == p["label"] for e, p in zip(examples, predictions))
    return correct / len(examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_output", help="everything the demo writes goes here")
    args = parser.parse_args()

    from ernie3.modeling import build_tiny_model

    started = time.time()
    model_dir = build_tiny_model(os.path.join(args.output_dir, "tiny-ernie"))
    seq_cls = fine_tune_seq_cls(model_dir, os.path.join(args.output_dir, "tnews"))
    static_accuracy = check_exported_model(seq_cls["export_dir"], sample_file("tnews", "dev"))

    rows = [
        ("tiny model (random init, generated vocab)", model_dir),
        ("tnews dev accuracy (Trainer)", f"{seq_cls['eval']['eval_accuracy']:.4f}"),
        ("tnews dev accuracy (exported, Paddle Inference)", f"{static_accuracy:.4f}"),
        ("best fine-tuned model", seq_cls["best_model_dir"]),
        ("test predictions (CLUE submission)", seq_cls["predict_file"]),
        ("static inference model", seq_cls["export_dir"]),
        ("wall time", f"{time.time() - started:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n== ERNIE 3.0 toolkit demo: results ==")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    run_cli(main)
