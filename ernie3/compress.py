"""One compress path for all task types: paddlenlp's Trainer.compress() (DynaBERT width pruning, then
post-training quantization over algorithms × calibration batch sizes), then every candidate evaluated through
Paddle Inference, a report, and the best candidate under a maximum metric drop copied to OUTPUT/best/."""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional, Sequence

from ernie3 import compat
from ernie3.args import check_max_seq_length, given_on_command_line, parse_arguments
from ernie3.data import load_examples
from ernie3.errors import UserError
from ernie3.export import (
    STATIC_MODEL_PREFIX,
    TASK_INFO_FILE,
    apply_recorded_settings,
    export_inference_model,
    write_task_info,
)
from ernie3.files import (
    atomic_directory,
    check_output_location,
    foreign_entries,
    paths_overlap,
    publish_staged_output,
    staging_directory_for,
    write_json_atomic,
    write_run_record,
    write_errors_as_user_errors,
    write_text_atomic,
)
from ernie3.modeling import check_model_source, load_model, load_tokenizer
from ernie3.tasks import Task
from ernie3.train import check_fine_tuned_model, dataset_of

STRATEGIES = ("dynabert+ptq", "ptq", "dynabert")
PTQ_ALGOS = ("hist", "mse", "KL", "avg", "abs_max")
QUANTIZED_PREFIX = "int8"  # file prefix paddlenlp gives quantized models
FLOAT_DIR = "float"
BEST_DIR = "best"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclass
class CandidateEvaluationArguments:
    max_metric_drop: float = field(
        default=0.01,
        metadata={"help": "Largest relative drop of the dev metric (vs. the float model) a candidate may have to be "
                          "picked as best; 0.01 = 1%%."},
    )  # fmt: skip
    num_threads: int = field(default=2, metadata={"help": "CPU threads for Paddle Inference when evaluating."})


def parse_width(text: str) -> Fraction:
    try:
        width = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--width_mult_list: '{text}' is not a number or fraction such as 3/4") from None
    if not 0 < width <= 1:
        raise UserError(f"--width_mult_list: {text} must be in (0, 1]")
    return width


def check_compression_settings(args: Any, model_config: dict, eval_args: Any = None) -> None:
    """Reject settings that would fail late, before any long work starts."""
    if eval_args is not None:
        drop = eval_args.max_metric_drop
        if not isinstance(drop, (int, float)) or not math.isfinite(drop) or not 0 <= drop <= 1:
            raise UserError(f"--max_metric_drop must be a relative drop between 0 and 1 (0.01 = 1%), got {drop}")
        if eval_args.num_threads < 1:
            raise UserError(f"--num_threads must be at least 1, got {eval_args.num_threads}")
    if args.strategy not in STRATEGIES:
        raise UserError(f"--strategy: '{args.strategy}' is not supported (choose one of: {', '.join(STRATEGIES)})")
    if "ptq" in args.strategy:
        for algo in args.algo_list or ():
            if algo not in PTQ_ALGOS:
                raise UserError(f"--algo_list: unknown algorithm '{algo}' (choose from: {', '.join(PTQ_ALGOS)})")
        for name in ("algo_list", "batch_size_list", "batch_num_list"):
            if not getattr(args, name):
                raise UserError(f"--{name} is empty")
        if len(set(args.algo_list)) != len(args.algo_list):
            raise UserError(f"--algo_list: an algorithm is listed twice ({' '.join(args.algo_list)})")
        if any(size <= 0 for size in args.batch_size_list) or any(n <= 0 for n in args.batch_num_list):
            raise UserError("--batch_size_list and --batch_num_list take positive numbers")
    if "dynabert" in args.strategy:
        if not args.width_mult_list:
            raise UserError("--width_mult_list is empty")
        heads, hidden = model_config["num_attention_heads"], model_config["intermediate_size"]
        widths = [parse_width(str(text)) for text in args.width_mult_list]
        if len(set(widths)) != len(widths):
            raise UserError(f"--width_mult_list: a width is listed twice ({' '.join(map(str, args.width_mult_list))})")
        for text, width in zip(args.width_mult_list, widths):
            if (heads * width).denominator != 1 or (hidden * width).denominator != 1:
                raise UserError(
                    f"--width_mult_list: width {text} does not keep whole attention heads "
                    f"({heads} heads × {text} = {float(heads * width):g}); pick a width w with {heads}·w whole"
                )


def read_model_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UserError(f"--model_name_or_path: cannot read {path} ({exc})") from None
    missing = [key for key in ("num_attention_heads", "intermediate_size") if key not in config]
    if missing:
        raise UserError(f"--model_name_or_path: {path} lacks '{missing[0]}': not an ERNIE model config")
    return config


#: what a compress run writes into its output dir (a later --overwrite_output_dir deletes only these)
COMPRESS_LAYOUT = (FLOAT_DIR, "width_mult_*", BEST_DIR, REPORT_JSON, REPORT_MD, "runs", "checkpoint-*")


def compress_kind(task_type: str) -> str:
    """What a compress output dir's run record says wrote it (see ernie3.files.RUN_RECORD)."""
    return f"compress_{task_type}"


def prepare_compress_output(
    task: Task, output_dir: str, model_dir: str, data_files: Sequence[Optional[str]], overwrite: bool
) -> None:
    """Check the output dir before any work; with --overwrite_output_dir it may hold only a previous compress
    output of the same task type (its run record and layout), which is deleted later, just before compressing."""
    check_output_location(output_dir, "--output_dir")
    if paths_overlap(output_dir, model_dir):
        raise UserError(
            f"--output_dir: {output_dir} overlaps the input model directory {model_dir} (--model_name_or_path); "
            "choose an output directory outside it"
        )
    if not (os.path.isdir(output_dir) and os.listdir(output_dir)):
        return
    if not overwrite:
        raise UserError(f"--output_dir: {output_dir} is not empty; pass --overwrite_output_dir to replace it")
    kind = compress_kind(task.task_type)
    foreign = foreign_entries(output_dir, kind, COMPRESS_LAYOUT)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(
            f"--overwrite_output_dir: {output_dir} holds {shown}, which no previous compress_{task.task_type}.py run "
            "wrote; refusing to delete it (choose a new or empty --output_dir)"
        )
    for path in data_files:
        if path and paths_overlap(path, output_dir):
            raise UserError(f"--overwrite_output_dir: input file {path} lies inside {output_dir}; move it first")


def make_dynamic_evaluator(task: Task, examples: list[dict], encoded: Any):
    """Evaluation of a dynamic-graph (or OFA super-) model on the dev loader, with the task's own metric."""
    import numpy as np
    import paddle
    from paddleslim.nas.ofa import OFA
    from paddlenlp.trainer import EvalPrediction
    from paddlenlp.trainer.utils.helper import nested_concat, nested_numpify

    compute_metrics = task.metrics_function(examples, encoded)

    @paddle.no_grad()
    def evaluate(trainer: Any, model: Any, data_loader: Any) -> float:
        model.eval()
        predictions, labels = None, None
        for batch in data_loader:
            outputs = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
            if isinstance(model, OFA):  # OFA returns (student outputs, teacher outputs)
                outputs = outputs[0]
            outputs = nested_numpify(tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,))
            batch_labels = nested_numpify(tuple(batch[name] for name in task.label_names if name in batch))
            # the Trainer's own padding value for outputs of different sequence lengths
            predictions = outputs if predictions is None else nested_concat(predictions, outputs, padding_index=-100)
            labels = batch_labels if labels is None else nested_concat(labels, batch_labels, padding_index=-100)
        model.train()
        unpack = lambda values: values[0] if len(values) == 1 else values  # noqa: E731
        metrics = compute_metrics(EvalPrediction(predictions=unpack(predictions), label_ids=unpack(labels)))
        value = float(metrics[task.metric_name])
        return value if np.isfinite(value) else 0.0

    return evaluate


def discover_candidates(output_dir: str) -> list[tuple[str, str, str]]:
    """(name, directory, file prefix) of every model the compress run produced, float baseline first."""
    found = [(FLOAT_DIR, os.path.join(output_dir, FLOAT_DIR), STATIC_MODEL_PREFIX)]
    pruned_dirs = sorted(glob.glob(os.path.join(output_dir, "width_mult_*")))
    for pruned in pruned_dirs:
        if os.path.isfile(os.path.join(pruned, STATIC_MODEL_PREFIX + ".pdmodel")):
            found.append((os.path.basename(pruned), pruned, STATIC_MODEL_PREFIX))
    for parent in [os.path.join(output_dir, FLOAT_DIR), *pruned_dirs]:
        for quantized in sorted(glob.glob(os.path.join(parent, "*", QUANTIZED_PREFIX + ".pdmodel"))):
            directory = os.path.dirname(quantized)
            found.append((os.path.relpath(directory, output_dir), directory, QUANTIZED_PREFIX))
    return found


def evaluate_candidates(
    task: Task, candidates: Sequence[tuple[str, str, str]], examples: list[dict], batch_size: int, num_threads: int
) -> list[dict]:
    """Metric, size, throughput and agreement with the float model of each candidate, via Paddle Inference."""
    from ernie3.backends import model_size_mb
    from ernie3.predict import Predictor

    results, decisions_of = [], {}
    for name, directory, prefix in candidates:
        predictor = Predictor(directory, model_prefix=prefix, num_threads=num_threads, batch_size=batch_size)
        predictor.predict(examples[:batch_size])  # warm-up: oneDNN builds its kernels on the first runs
        started = time.perf_counter()
        outputs = predictor.predict(examples)
        elapsed = time.perf_counter() - started
        metrics = task.score(examples, outputs)
        decisions_of[name] = [task.decision(output) for output in outputs]
        # a quantized candidate also compares with the float model it was quantized from (its parent dir)
        source = os.path.dirname(name) or None
        results.append({
            "name": name, "path": directory, "model_file": prefix + ".pdmodel", "precision": predictor.precision,
            "metrics": metrics, "metric": metrics[task.metric_name], "size_mb": round(model_size_mb(directory, prefix), 3),
            "throughput": round(len(examples) / elapsed, 2),
            "agreement_with_float": round(agreement(decisions_of[name], decisions_of[FLOAT_DIR]), 4),
            "quantized_from": source,
            "agreement_with_source": round(agreement(decisions_of[name], decisions_of[source]), 4) if source else None,
        })  # fmt: skip
    return results


def agreement(decisions: Sequence, reference: Sequence) -> float:
    return sum(a == b for a, b in zip(decisions, reference)) / len(reference)


def pick_best(results: list[dict], max_metric_drop: float) -> dict:
    """The fastest candidate whose metric is within `max_metric_drop` (relative) of the float model's."""
    floor = results[0]["metric"] * (1 - max_metric_drop)
    eligible = [r for r in results if r["metric"] >= floor - 1e-12]
    return max(eligible, key=lambda r: r["throughput"])


def markdown_report(task: Task, results: list[dict], best: dict, settings: dict) -> str:
    metric_names = list(results[0]["metrics"])
    header = ["candidate", "precision", *metric_names, "size (MB)", "throughput (seq/s)", "agreement with float",
              "INT8 agreement with its float source", "best"]  # fmt: skip
    lines = [
        f"# Compression report: {task.name}",
        "",
        f"Strategy `{settings['strategy']}`; dev examples: {settings['eval_examples']}; Paddle Inference on CPU "
        f"({settings['num_threads']} threads, batch {settings['batch_size']}, throughput includes tokenization); "
        f"best = fastest candidate within {settings['max_metric_drop']:.1%} of the float model's {task.metric_name}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in results:
        row = [r["name"], r["precision"], *(f"{r['metrics'][m]:.4f}" for m in metric_names), f"{r['size_mb']:.2f}",
               f"{r['throughput']:.1f}", f"{r['agreement_with_float']:.2%}",
               f"{r['agreement_with_source']:.2%}" if r["quantized_from"] else "", "✓" if r is best else ""]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def prepare_candidate_dirs(candidates: Sequence[tuple[str, str, str]], tokenizer: Any, task: Task, max_seq_length: int) -> None:
    """Give every candidate directory the tokenizer and task record, so each loads on its own."""
    for _, directory, _ in candidates:
        if not os.path.isfile(os.path.join(directory, TASK_INFO_FILE)):
            tokenizer.save_pretrained(directory)
            write_task_info(directory, task, max_seq_length)


def copy_best(best: dict, output_dir: str) -> str:
    target = os.path.join(output_dir, BEST_DIR)
    with atomic_directory(target) as staging:
        for entry in os.listdir(best["path"]):
            source = os.path.join(best["path"], entry)
            if os.path.isfile(source):
                shutil.copy2(source, staging)
        with open(os.path.join(staging, "candidate.json"), "w", encoding="utf-8") as handle:
            json.dump({k: best[k] for k in ("name", "model_file", "precision", "metrics")}, handle, indent=2)
    return target


def run(task_type: str, argv: Optional[Sequence[str]] = None, task_arguments: Sequence[type] = ()) -> dict:
    """Compress a fine-tuned model directory; returns the report. `task_arguments` as for ernie3.train.run."""
    import paddle

    compat.patch_for_compression()
    staging_dirs: list[str] = []
    try:
        with paddle.utils.unique_name.guard(), write_errors_as_user_errors("the compress output"):
            return _run(task_type, argv, task_arguments, staging_dirs)
    finally:  # a failed run leaves the previous output as it was, and no half-built one beside it
        for staging in staging_dirs:
            shutil.rmtree(staging, ignore_errors=True)


def _run(
    task_type: str, argv: Optional[Sequence[str]], task_arguments: Sequence[type], staging_dirs: list[str]
) -> dict:
    from paddlenlp.trainer import Trainer, set_seed
    from paddlenlp.utils.log import logger

    argv = list(sys.argv[1:] if argv is None else argv)
    task, model_args, data_args, args, eval_args, *task_options, _ = parse_arguments(
        task_type, extra_dataclasses=(CandidateEvaluationArguments, *task_arguments), argv=argv, for_compression=True
    )
    for options in task_options:
        task = task.with_options(**dataclasses.asdict(options))
    set_seed(args.seed)
    model_dir = model_args.model_name_or_path
    if check_model_source(model_dir) is None:
        raise UserError(f"--model_name_or_path: compression needs a local fine-tuned model directory, got '{model_dir}'")
    check_fine_tuned_model(task, model_dir)
    # the model's own max_seq_length and task options (QA windows), unless a flag overrides them
    task, data_args.max_seq_length = apply_recorded_settings(
        model_dir, task, data_args.max_seq_length, given_on_command_line(argv)
    )
    model_config = read_model_config(model_dir)
    check_compression_settings(args, model_config, eval_args)
    output_dir = args.output_dir
    data_files = [data_args.train_file, data_args.dev_file]
    prepare_compress_output(task, output_dir, model_dir, data_files, args.overwrite_output_dir)

    tokenizer = load_tokenizer(model_dir)
    check_max_seq_length(data_args.max_seq_length, tokenizer, model_config.get("max_position_embeddings"))
    skip = data_args.skip_invalid_records
    examples = {"dev": load_examples(task, "dev", data_args.dev_file, skip_invalid=skip)}
    if "dynabert" in args.strategy:
        examples["train"] = load_examples(task, "train", data_args.train_file, skip_invalid=skip)
    encoded = {split: task.encode(items, tokenizer, data_args.max_seq_length) for split, items in examples.items()}
    datasets = {split: dataset_of(split_encoded) for split, split_encoded in encoded.items()}
    model = load_model(model_dir, task.model_class())

    # build the new output beside the old one: a failed or killed run leaves the previous output untouched
    final_output_dir = output_dir
    output_dir = args.output_dir = staging_directory_for(final_output_dir)
    args.logging_dir = os.path.join(output_dir, "runs")
    staging_dirs.append(output_dir)
    write_run_record(output_dir, compress_kind(task.task_type), script=f"compress_{task.task_type}.py", task=task.name)
    if "dynabert" in args.strategy:
        steps_per_epoch = -(-len(datasets["train"]) // args.per_device_train_batch_size)
        total_steps = args.max_steps if args.max_steps > 0 else int(steps_per_epoch * args.num_train_epochs)
        # paddlenlp evaluates and saves each width only every `save_steps`: make sure that happens at least once
        args.save_steps = min(args.save_steps, max(total_steps, 1))

    started = time.time()
    export_inference_model(model, tokenizer, task, os.path.join(output_dir, FLOAT_DIR), data_args.max_seq_length)
    if args.strategy == "ptq":
        args.input_infer_model_path = os.path.join(output_dir, FLOAT_DIR, STATIC_MODEL_PREFIX)
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=task.data_collator(tokenizer),
        train_dataset=datasets.get("train"),
        eval_dataset=datasets["dev"],
        tokenizer=tokenizer,
        criterion=task.loss_function(),
    )
    # paddlenlp's DynaBERT computes QA head importance on `eval_examples`: dev features with answer positions
    trainer.eval_examples = datasets["dev"]
    trainer.compress(custom_evaluate=make_dynamic_evaluator(task, examples["dev"], encoded["dev"]))
    compress_seconds = time.time() - started
    output_dir = args.output_dir = publish_staged_output(output_dir, final_output_dir, COMPRESS_LAYOUT)

    candidates = discover_candidates(output_dir)
    prepare_candidate_dirs(candidates, tokenizer, task, data_args.max_seq_length)
    logger.info(f"Evaluating {len(candidates)} candidates with Paddle Inference on {len(examples['dev'])} dev examples")
    results = evaluate_candidates(
        task, candidates, examples["dev"], args.per_device_eval_batch_size, eval_args.num_threads
    )
    best = pick_best(results, eval_args.max_metric_drop)
    best_dir = copy_best(best, output_dir)
    settings = {
        "strategy": args.strategy, "eval_examples": len(examples["dev"]), "num_threads": eval_args.num_threads,
        "batch_size": args.per_device_eval_batch_size, "max_metric_drop": eval_args.max_metric_drop,
        "width_mult_list": [str(w) for w in args.width_mult_list or []], "algo_list": args.algo_list,
        "batch_size_list": args.batch_size_list, "batch_num_list": args.batch_num_list,
    }  # fmt: skip
    report = {
        "task": task.name, "model_dir": model_dir, "settings": settings, "compress_seconds": round(compress_seconds, 1),
        "candidates": results, "best": best["name"], "best_dir": best_dir,
    }  # fmt: skip
    markdown = markdown_report(task, results, best, settings)
    write_json_atomic(os.path.join(output_dir, REPORT_JSON), report)
    write_text_atomic(os.path.join(output_dir, REPORT_MD), markdown)
    logger.info(f"Compression report written to {os.path.join(output_dir, REPORT_MD)}\n{markdown}")
    report["markdown"] = markdown
    return report
