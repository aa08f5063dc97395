"""Trainer wiring shared by run_seq_cls.py, run_token_cls.py and run_qa.py: train, evaluate, predict, export."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional, Sequence

from ernie3.args import parse_arguments
from ernie3.data import load_examples
from ernie3.errors import UserError
from ernie3.export import TASK_INFO_FILE, export_inference_model, write_task_info
from ernie3.modeling import load_model, load_tokenizer
from ernie3.tasks import Task
from ernie3.tasks.base import Encoded, output_list

BEST_MODEL_DIR = "best"
PREDICT_DIR = "predict"


def dataset_of(encoded: Encoded) -> Any:
    from paddlenlp.datasets import MapDataset

    return MapDataset(encoded.features)


def check_fine_tuned_model(task: Task, model_dir: str) -> None:
    """Evaluating or predicting without training needs a model already fine-tuned for this task."""
    info_path = os.path.join(model_dir, TASK_INFO_FILE)
    if os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as handle:
            trained_for = json.load(handle).get("task_name")
        if trained_for != task.name:
            raise UserError(f"--model_name_or_path: {model_dir} was fine-tuned for {trained_for}, not {task.name}")
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config_path):
        return
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    architectures = config.get("architectures") or []
    if architectures and not any(name.endswith(task.architecture_suffix) for name in architectures):
        raise UserError(
            f"--model_name_or_path: {model_dir} is a {architectures[0]}, not a model fine-tuned for {task.name}; "
            "add --do_train to fine-tune it first"
        )
    num_labels = len(config.get("id2label") or {}) or config.get("num_labels")
    if task.labels and num_labels and num_labels != task.num_labels:
        raise UserError(
            f"--model_name_or_path: {model_dir} has a {num_labels}-label head, but {task.name} has {task.num_labels} labels"
        )


def run(task_type: str, argv: Optional[Sequence[str]] = None, task_arguments: Sequence[type] = ()) -> dict:
    """Run the steps the flags ask for; returns the metrics and paths a caller may print.

    `task_arguments`: dataclasses of flags only this task type has (e.g. QA's --doc_stride); their values become
    the task's options, which shape its features and decoding and travel with exported models.
    """
    import paddle

    # Optimizer state in checkpoints is keyed by parameter names, which come from a process-wide counter:
    # a fresh name scope per run lets a run resume another run's checkpoint within one process too.
    with paddle.utils.unique_name.guard():
        return _run(task_type, argv, task_arguments)


def _run(task_type: str, argv: Optional[Sequence[str]], task_arguments: Sequence[type]) -> dict:
    from paddlenlp.trainer import Trainer, get_last_checkpoint, set_seed
    from paddlenlp.utils.log import logger

    task, model_args, data_args, training_args, *task_options, requested = parse_arguments(
        task_type, extra_dataclasses=task_arguments, argv=argv
    )
    for options in task_options:
        task = task.with_options(**dataclasses.asdict(options))
    if not any(requested.values()):
        raise UserError("nothing to do: pass one or more of --do_train, --do_eval, --do_predict, --do_export")
    set_seed(training_args.seed)
    output_dir = training_args.output_dir

    # Load everything that can fail on bad input before any long work starts.
    tokenizer = load_tokenizer(model_args.model_name_or_path)
    need_dev = requested["do_train"] or requested["do_eval"]
    files = {"train": data_args.train_file, "dev": data_args.dev_file, "test": data_args.test_file}
    wanted = {"train": requested["do_train"], "dev": need_dev, "test": requested["do_predict"]}
    examples = {
        split: load_examples(task, split, files[split], skip_invalid=data_args.skip_invalid_records)
        for split in ("train", "dev", "test")
        if wanted[split]
    }
    encoded = {
        split: task.encode(split_examples, tokenizer, data_args.max_seq_length)
        for split, split_examples in examples.items()
    }
    datasets = {split: dataset_of(split_encoded) for split, split_encoded in encoded.items()}
    for split, split_examples in examples.items():
        windows = len(encoded[split].features)
        extra = f" ({windows} features: long inputs are cut into windows)" if windows != len(split_examples) else ""
        logger.info(f"{task.name} {split}: {len(split_examples)} examples{extra}")

    if not requested["do_train"] and os.path.isdir(model_args.model_name_or_path):
        check_fine_tuned_model(task, model_args.model_name_or_path)
    model = load_model(model_args.model_name_or_path, task.model_class(), **task.model_kwargs())

    if training_args.label_names is None:
        # paddlenlp's Trainer guesses QA label names from a misspelt class name, so every task states its own
        training_args.label_names = list(task.label_names)
    trainer = Trainer(
        model=model,
        args=training_args,
        data_collator=task.data_collator(tokenizer),
        train_dataset=datasets.get("train"),
        eval_dataset=datasets.get("dev"),
        tokenizer=tokenizer,
        # metrics that need whole examples (entities, answers over windows) decode the dev features first
        compute_metrics=task.metrics_function(examples["dev"], encoded["dev"]) if "dev" in encoded else None,
    )
    summary: dict[str, Any] = {"task": task.name, "output_dir": output_dir}

    if requested["do_train"]:
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint is None and os.path.isdir(output_dir) and not training_args.overwrite_output_dir:
            checkpoint = get_last_checkpoint(output_dir)
            if checkpoint:
                logger.info(f"Resuming training from {checkpoint} (pass --overwrite_output_dir to start over)")
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        best_dir = os.path.join(output_dir, BEST_MODEL_DIR)
        trainer.save_model(best_dir)  # the best checkpoint by dev metric: load_best_model_at_end
        if training_args.should_save:
            write_task_info(best_dir, task, data_args.max_seq_length)
        summary["best_model_dir"] = best_dir
        summary["resumed_from"] = checkpoint

    if requested["do_eval"]:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        summary["eval"] = metrics

    if requested["do_predict"]:
        prediction = trainer.predict(datasets["test"])
        results = task.decode(examples["test"], encoded["test"], output_list(prediction.predictions))
        path = os.path.join(output_dir, PREDICT_DIR, f"{task.name}_predict.json")
        if training_args.should_save:
            task.write_predictions(path, examples["test"], results)
            logger.info(f"Predictions for {len(examples['test'])} test examples written to {path}")
        summary["predict_file"] = path

    if requested["do_export"]:
        export_dir = model_args.export_model_dir or os.path.join(output_dir, "export")
        if training_args.should_save:
            export_inference_model(trainer.model, tokenizer, task, export_dir, data_args.max_seq_length)
            logger.info(f"Static inference model exported to {export_dir}")
        summary["export_dir"] = export_dir
    return summary
