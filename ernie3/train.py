"""Trainer wiring shared by run_seq_cls.py, run_token_cls.py and run_qa.py: train, evaluate, predict, export."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ernie3.args import RunArguments, check_max_seq_length, parse_arguments
from ernie3.data import load_examples
from ernie3.errors import UserError
from ernie3.export import apply_recorded_settings, export_inference_model, write_task_info
from ernie3.layout import (
    BEST_DIR,
    EVAL_PER_CLASS_JSON,
    EVAL_PER_CLASS_MD,
    EXPORT_DIR,
    RUN_LOG_FILE,
    TASK_INFO_FILE,
    TRAIN_LAYOUT,
    predictions_file,
)
from ernie3.files import (
    LEFTOVER_PATTERNS,
    STAGING_MARK,
    WRITE_ERRNOS,
    atomic_directory,
    check_output_location,
    foreign_entries,
    paths_overlap,
    read_run_record,
    remove_previous_outputs,
    write_error,
    write_errors_as_user_errors,
    write_json_atomic,
    write_run_record,
    write_text_atomic,
)
from ernie3.fast_tokenizer import tokenizer_for_task
from ernie3.vocab import save_tokenizer
from ernie3.logs import attach_run_log
from ernie3.metrics import per_class_markdown
from ernie3.modeling import check_model_source, load_model, load_tokenizer, model_config_value
from ernie3.model_files import read_task_info
from ernie3.run_identity import changed_data, check_resume, data_identity, model_identity, resume_error
from ernie3.tasks import Task
from ernie3.tasks.base import Encoded, output_list


def dataset_of(encoded: Encoded) -> Any:
    from paddlenlp.datasets import MapDataset

    return MapDataset(encoded.features)


#: written into a checkpoint last: a checkpoint without it was interrupted while being written
CHECKPOINT_DONE_FILE = "ernie3_checkpoint.json"


def command_for(task: Task, job: str) -> str:
    """The command users know for a job on `task`, for run records and advice in error messages: the task type's
    own script (run_seq_cls.py, compress_qa.py) where the repository has one, else `ernie3 <job>`."""
    script = f"{'run' if job == 'train' else job}_{task.task_type}.py"
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return script if os.path.isfile(os.path.join(repository, script)) else f"ernie3 {job}"



def run_kind(task_type: str) -> str:
    """What a training output dir's run record says wrote it (see ernie3.files.RUN_RECORD)."""
    return f"run_{task_type}"


def check_fine_tuned_model(task: Task, model_dir: str) -> None:
    """Evaluating or predicting without training needs a model already fine-tuned for this task."""
    if os.path.isfile(os.path.join(model_dir, TASK_INFO_FILE)):
        trained_for = read_task_info(model_dir)["task_name"]  # checked: a damaged record is one line naming it
        if not task.reads_models_of(trained_for):
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
            f"fine-tune it first with {command_for(task, 'train')} --do_train"
        )
    num_labels = len(config.get("id2label") or {}) or config.get("num_labels")
    if task.labels and num_labels and num_labels != task.num_labels:
        raise UserError(
            f"--model_name_or_path: {model_dir} has a {num_labels}-label head, but {task.name} has {task.num_labels} labels"
        )


def checkpoint_step(path: str) -> int:
    return int(path.rstrip(os.sep).rsplit("-", 1)[1])


def is_complete_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CHECKPOINT_DONE_FILE))


def last_complete_checkpoint(output_dir: str) -> Optional[str]:
    """The newest checkpoint that was written to the end; interrupted ones are skipped with a warning."""
    from paddlenlp.trainer.trainer_utils import PREFIX_CHECKPOINT_DIR
    from paddlenlp.utils.log import logger

    if not os.path.isdir(output_dir):
        return None
    found = []
    for entry in os.listdir(output_dir):
        prefix, _, step = entry.rpartition("-")
        if prefix == PREFIX_CHECKPOINT_DIR and step.isdigit() and os.path.isdir(os.path.join(output_dir, entry)):
            found.append(os.path.join(output_dir, entry))
    for path in sorted(found, key=checkpoint_step, reverse=True):
        if is_complete_checkpoint(path):
            return path
        logger.warning(
            f"Skipping {path}: it has no {CHECKPOINT_DONE_FILE}, so it was interrupted while being written "
            "(or not written by this toolkit)"
        )
    return None


def checkpoint_total_loss(checkpoint: Optional[str]) -> Optional[float]:
    """Sum of the training losses of every step up to `checkpoint` (recorded when it was written)."""
    if not checkpoint:
        return 0.0
    try:
        with open(os.path.join(checkpoint, CHECKPOINT_DONE_FILE), encoding="utf-8") as handle:
            return float(json.load(handle)["total_loss"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DivergedError(UserError):
    """Training produced a non-finite loss: the model is NaN and must not be kept as `best`."""


def check_finite_loss(value: float, step: int, what: str = "training loss") -> None:
    if not math.isfinite(value):
        raise DivergedError(
            f"{what} became {value} at step {step}: training diverged and nothing from this step is kept as best; "
            "lower --learning_rate (or check the data) and start again with --overwrite_output_dir"
        )


def project_trainer_class() -> type:
    """The Trainer every run uses: complete-or-skipped checkpoints that carry the task record and the loss so far,
    `save_total_limit` in single-process runs, atomic metric files, and a stop on a NaN loss."""
    from paddlenlp.trainer import TrainerCallback

    from ernie3 import compat

    class StopOnNonFiniteLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss", "eval_loss"):
                if logs and key in logs:
                    what = "dev loss" if key == "eval_loss" else "training loss"
                    check_finite_loss(float(logs[key]), state.global_step, what)

    class ProjectTrainer(compat.trainer_class()):
        def __init__(self, *args: Any, task: Task, max_seq_length: int, **kwargs: Any):
            super().__init__(*args, **kwargs)
            compat.use_every_core_for_training()
            self.task, self.max_seq_length = task, max_seq_length
            self._running_loss = None
            self.add_callback(StopOnNonFiniteLoss())

        def train(self, *args: Any, **kwargs: Any) -> Any:
            from paddlenlp.trainer.trainer_callback import ProgressCallback

            try:
                return super().train(*args, **kwargs)
            except BaseException:
                # end the progress bars' line, so that the error that stopped training starts on its own line
                for callback in self.callback_handler.callbacks:
                    if isinstance(callback, ProgressCallback):
                        for bar in (callback.prediction_bar, callback.training_bar):
                            if bar is not None:
                                bar.close()
                raise

        def _maybe_log_save_evaluate(self, tr_loss, *args, **kwargs):
            self._running_loss = tr_loss  # the loss summed since the last log, still to be added to the total
            return super()._maybe_log_save_evaluate(tr_loss, *args, **kwargs)

        def _save_checkpoint(self, model, metrics=None):
            from paddlenlp.trainer.trainer_utils import PREFIX_CHECKPOINT_DIR

            running = float(self._running_loss.item()) if self._running_loss is not None else 0.0
            total = self._total_loss_scalar + running + (self.loss_before_resume or 0.0)
            check_finite_loss(total, self.state.global_step)
            done = {"global_step": self.state.global_step, "total_loss": total}
            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if self.args.world_size > 1 or not self.args.should_save:
                # several processes write one checkpoint (and upstream rotates it on rank 0): written in place,
                # its done file last, so that an interrupted one is skipped on resume
                super()._save_checkpoint(model, metrics)
                if self.args.should_save:
                    self._mark_complete(os.path.join(self.args.output_dir, name), done)
            else:
                self._save_checkpoint_atomically(model, metrics, name, done)
            compat.rotate_checkpoints_in_single_process(self)

        def _mark_complete(self, path: str, done: dict) -> None:
            write_task_info(path, self.task, self.max_seq_length)
            write_json_atomic(os.path.join(path, CHECKPOINT_DONE_FILE), done)

        def _save_checkpoint_atomically(self, model: Any, metrics: Optional[dict], name: str, done: dict) -> None:
            """Upstream writes `<output_dir>/checkpoint-N` file by file; here it writes into a staging folder
            (`.checkpoint-N.partial-*`, a leftover pattern), renamed to `checkpoint-N` once complete: a full disk
            or a kill never leaves a truncated checkpoint under its final name."""
            from paddlenlp.trainer.trainer import TRAINER_STATE_NAME

            run_dir = self.args.output_dir
            final = os.path.join(run_dir, name)
            try:
                staging = tempfile.mkdtemp(prefix=f".{name}{STAGING_MARK}", dir=run_dir)
            except OSError as exc:
                raise write_error(final, exc) from None
            staged = os.path.join(staging, name)
            try:
                self.args.output_dir = staging  # upstream names the checkpoint folder after args.output_dir
                try:
                    super()._save_checkpoint(model, metrics)
                finally:
                    self.args.output_dir = run_dir
                if self.state.best_model_checkpoint == staged:
                    # upstream records the path it wrote; the state (and its copy in the checkpoint, read on
                    # resume) must name the checkpoint where it will live
                    self.state.best_model_checkpoint = final
                    self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
                self._mark_complete(staged, done)
                if os.path.lexists(final):  # an interrupted checkpoint of an older run at this step: replaced
                    os.replace(final, os.path.join(staging, f"{name}.old"))
                os.replace(staged, final)
            except BaseException as exc:
                shutil.rmtree(staging, ignore_errors=True)
                if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
                    raise write_error(final, exc) from None
                raise
            shutil.rmtree(staging, ignore_errors=True)

        def save_metrics(self, split, metrics, combined=True):
            if not self.is_world_process_zero():
                return
            write_json_atomic(os.path.join(self.args.output_dir, f"{split}_results.json"), metrics)
            if combined:
                path = os.path.join(self.args.output_dir, "all_results.json")
                try:
                    with open(path, encoding="utf-8") as handle:
                        combined_metrics = json.load(handle)
                except (OSError, ValueError):
                    combined_metrics = {}
                write_json_atomic(path, {**combined_metrics, **metrics})

    return ProjectTrainer


def best_checkpoint_eval_metrics(state: Any) -> Optional[dict]:
    """The dev metrics the Trainer logged for its best checkpoint, if load_best_model_at_end loaded it."""
    if not state.best_model_checkpoint:
        return None
    step = checkpoint_step(state.best_model_checkpoint)
    for entry in reversed(state.log_history):
        if entry.get("step") == step and any(key.startswith("eval_") for key in entry):
            metrics = {key: value for key, value in entry.items() if key.startswith("eval_")}
            if "epoch" in entry:
                metrics["epoch"] = entry["epoch"]
            return metrics
    return None


def save_best_model(trainer: Any, tokenizer: Any, task: Task, best_dir: str, max_seq_length: int) -> None:
    """best/: weights as safetensors (loading them runs no code, unlike pickled .pdparams), tokenizer, task record."""
    with atomic_directory(best_dir) as staging:
        trainer.model.save_pretrained(staging, safe_serialization=True)
        save_tokenizer(tokenizer, staging)
        write_task_info(staging, task, max_seq_length)


def check_replaceable_model_dir(path: str, flag: str) -> None:
    """A model directory this run replaces must be missing, empty, or one this toolkit wrote (its task record)."""
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, TASK_INFO_FILE)):
        raise UserError(
            f"{flag}: {path} already holds files that are not a model written by this toolkit; "
            "refusing to replace them (choose another directory)"
        )


def write_per_class_report(trainer: Any, task: Task, examples: list, encoded: Encoded, dataset: Any,
                           output_dir: str) -> Optional[str]:
    """--do_eval's per-class table (JSON + Markdown) beside eval_results.json, for tasks with classes."""
    from paddlenlp.utils.log import logger

    if type(task).class_report is Task.class_report:
        return None
    outputs = output_list(trainer.predict(dataset).predictions)
    rows = task.class_report(examples, task.decode(examples, encoded, outputs))
    if rows is None:
        return None
    path = os.path.join(output_dir, EVAL_PER_CLASS_MD)
    write_json_atomic(os.path.join(output_dir, EVAL_PER_CLASS_JSON), rows)
    write_text_atomic(path, per_class_markdown(f"{task.name} dev: per class", rows))
    logger.info(f"Per-class precision/recall/F1 written to {path}")
    return path


def prepare_training_output(
    task: Task, model_args: Any, training_args: Any, requested: dict[str, bool]
) -> Optional[str]:
    """Check every output location before any work; returns the export dir if --do_export.

    Never deletes here: --overwrite_output_dir's clean-up happens just before training starts.
    """
    output_dir = training_args.output_dir
    check_output_location(output_dir, "--output_dir")
    model_dir = model_args.model_name_or_path
    local_model = os.path.isdir(model_dir)
    kind = run_kind(task.task_type)
    writes_models = requested["do_train"] or requested["do_export"]
    if local_model and (requested["do_train"] or training_args.overwrite_output_dir):
        if paths_overlap(output_dir, model_dir):
            raise UserError(
                f"--output_dir: {output_dir} overlaps the input model directory {model_dir} (--model_name_or_path); "
                "training would write over its own input: choose an output directory outside it"
            )
    # deleting (--overwrite_output_dir) needs this script's record; adding to the dir needs only its layout
    foreign = foreign_entries(output_dir, kind, TRAIN_LAYOUT, require_record=training_args.overwrite_output_dir)
    if foreign and (training_args.overwrite_output_dir or writes_models):
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        if training_args.overwrite_output_dir:
            action = "--overwrite_output_dir would delete"
        else:
            action = "the run would mix its outputs with"
        raise UserError(
            f"--output_dir: {output_dir} holds {shown}, which no previous {command_for(task, 'train')} run "
            f"wrote; {action} them: choose a new or empty --output_dir"
        )
    if requested["do_train"]:
        check_replaceable_model_dir(os.path.join(output_dir, BEST_DIR), "--output_dir")
    export_dir = None
    if requested["do_export"]:
        export_dir = model_args.export_model_dir or os.path.join(output_dir, EXPORT_DIR)
        flag = "--export_model_dir" if model_args.export_model_dir else "--output_dir"
        check_output_location(export_dir, flag)
        if local_model and paths_overlap(export_dir, model_dir):
            raise UserError(f"{flag}: {export_dir} overlaps the input model directory {model_dir}; export elsewhere")
        check_replaceable_model_dir(export_dir, flag)
    return export_dir


@dataclass
class RunData:
    """A run's tokenizer and data: validated examples, their features, and the Trainer's datasets, per split."""

    tokenizer: Any
    examples: dict[str, list[dict]]
    encoded: dict[str, Encoded]
    datasets: dict[str, Any]


def model_settings(arguments: RunArguments) -> tuple[Task, int]:
    """The task and max_seq_length a run uses: a fine-tuned local model brings the settings it was trained with
    (max_seq_length, task options such as QA windows), unless a flag says otherwise."""
    task, max_seq_length = arguments.task, arguments.data.max_seq_length
    if os.path.isdir(arguments.model.model_name_or_path):
        return apply_recorded_settings(arguments.model.model_name_or_path, task, max_seq_length, arguments.given)
    return task, max_seq_length


def load_run_data(
    task: Task, model_dir: str, max_seq_length: int, data_args: Any, splits: Sequence[str], max_positions: Optional[int]
) -> RunData:
    """Shared by training and compression: load everything that can fail on bad input before any long work."""
    from paddlenlp.utils.log import logger

    tokenizer = load_tokenizer(model_dir)
    check_max_seq_length(max_seq_length, tokenizer, max_positions)
    files = {"train": data_args.train_file, "dev": data_args.dev_file, "test": data_args.test_file}
    skip = data_args.skip_invalid_records
    examples = {split: load_examples(task, split, files[split], skip_invalid=skip) for split in splits}
    # features by the fast tokenizer where it gives paddlenlp's ids (the Trainer and saved models keep paddlenlp's)
    encoder, why, _ = tokenizer_for_task(tokenizer, "auto", task, max_seq_length)
    logger.info(f"feature conversion: {why}")
    encoded = {split: task.encode(items, encoder, max_seq_length) for split, items in examples.items()}
    datasets = {split: dataset_of(split_encoded) for split, split_encoded in encoded.items()}
    for split, split_examples in examples.items():
        windows = len(encoded[split].features)
        extra = f" ({windows} features: long inputs are cut into windows)" if windows != len(split_examples) else ""
        logger.info(f"{task.name} {split}: {len(split_examples)} examples{extra}")
    return RunData(tokenizer, examples, encoded, datasets)


def run(task_type: Optional[str] = None, argv: Optional[Sequence[str]] = None) -> dict:
    """Run the steps the flags ask for; returns the metrics and paths a caller may print.

    `task_type` restricts --task_name to one type (run_seq_cls.py); None accepts every task (`ernie3 train`).
    The task's own flags (its `options_class`, e.g. QA's --doc_stride) become its options, which shape its
    features and decoding and travel with exported models.
    """
    import paddle

    # Optimizer state in checkpoints is keyed by parameter names, which come from a process-wide counter:
    # a fresh name scope per run lets a run resume another run's checkpoint within one process too.
    with paddle.utils.unique_name.guard(), write_errors_as_user_errors("the output directory"):
        return _run(task_type, argv)


def _run(task_type: Optional[str], argv: Optional[Sequence[str]]) -> dict:
    from paddlenlp.trainer import set_seed
    from paddlenlp.utils.log import logger

    arguments = parse_arguments(argv, task_type)
    model_args, data_args, training_args, requested = arguments.model, arguments.data, arguments.training, arguments.requested
    if not any(requested.values()):
        raise UserError("nothing to do: pass one or more of --do_train, --do_eval, --do_predict, --do_export")
    set_seed(training_args.seed)
    output_dir = training_args.output_dir
    model_dir = model_args.model_name_or_path
    local_model = check_model_source(model_dir)
    task, max_seq_length = model_settings(arguments)
    export_dir = prepare_training_output(task, model_args, training_args, requested)
    kind = run_kind(task.task_type)
    model_identity_now = model_identity(model_dir)
    data_now = data_identity({"train": data_args.train_file, "dev": data_args.dev_file})
    checkpoint = None
    if requested["do_train"]:
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint is not None and not is_complete_checkpoint(checkpoint):
            raise UserError(f"--resume_from_checkpoint: {checkpoint} is not a complete checkpoint of this toolkit")
        on_purpose = checkpoint is not None
        if checkpoint is None and not training_args.overwrite_output_dir:
            checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint:
            # the run record beside the checkpoint says which model and task it continues
            record = read_run_record(os.path.dirname(os.path.abspath(checkpoint)))
            record = record if record and record.get("kind") == kind else None
            check_resume(record, checkpoint, task.name, model_dir, model_identity_now, on_purpose)
            changed = changed_data(record, data_now)
            note = f"; the {' and '.join(changed)} file changed since it was written" if changed else ""
            print(f"Resuming training from {checkpoint}{note} (--overwrite_output_dir starts over)", flush=True)

    need_dev = requested["do_train"] or requested["do_eval"]
    wanted = {"train": requested["do_train"], "dev": need_dev, "test": requested["do_predict"]}
    data = load_run_data(task, model_dir, max_seq_length, data_args, [split for split, want in wanted.items() if want],
                         model_config_value(model_dir, "max_position_embeddings"))  # fmt: skip
    tokenizer, examples, encoded, datasets = data.tokenizer, data.examples, data.encoded, data.datasets

    if not requested["do_train"] and local_model:
        check_fine_tuned_model(task, model_dir)
    model = load_model(model_dir, task.model_class(), **task.model_kwargs())
    check_max_seq_length(max_seq_length, tokenizer, getattr(model.config, "max_position_embeddings", None))
    # every fail-fast check passed (a refused run creates nothing): the libraries' INFO/DEBUG lines, held so far,
    # go to the output dir's log file
    log_file = attach_run_log(os.path.join(output_dir, RUN_LOG_FILE)) if training_args.should_save else None

    if training_args.label_names is None:
        # paddlenlp's Trainer guesses QA label names from a misspelt class name, so every task states its own
        training_args.label_names = list(task.label_names)
    trainer = project_trainer_class()(
        model=model,
        args=training_args,
        data_collator=task.data_collator(tokenizer),
        train_dataset=datasets.get("train"),
        eval_dataset=datasets.get("dev"),
        tokenizer=tokenizer,
        # metrics that need whole examples (entities, answers over windows) decode the dev features first
        compute_metrics=task.metrics_function(examples["dev"], encoded["dev"]) if "dev" in encoded else None,
        task=task,
        max_seq_length=max_seq_length,
    )
    summary: dict[str, Any] = {"task": task.name, "task_type": task.task_type, "output_dir": output_dir,
                               "metric_name": task.metric_name, "log_file": log_file, "model": model_dir,
                               "train_file": data_args.train_file, "dev_file": data_args.dev_file}  # fmt: skip
    if training_args.should_save and not foreign_entries(output_dir, kind, TRAIN_LAYOUT, require_record=False):
        if training_args.overwrite_output_dir and requested["do_train"]:
            # start over: checkpoints of the previous run would otherwise be resumed from or rotated with ours
            remove_previous_outputs(output_dir, ("checkpoint-*", "runs", *LEFTOVER_PATTERNS))
        # which model and data the checkpoints here come from: kept by runs that do not train
        previous = read_run_record(output_dir) or {}
        identity = {key: previous[key] for key in ("model", "data") if key in previous and previous.get("kind") == kind}
        if requested["do_train"]:
            identity = {"model": model_identity_now, "data": data_now}
        write_run_record(output_dir, kind, script=command_for(task, "train"), task=task.name, **identity)

    best_eval = None
    if requested["do_train"]:
        trainer.loss_before_resume = checkpoint_total_loss(checkpoint)
        if trainer.loss_before_resume is None:
            logger.warning(f"{checkpoint} records no loss so far: train_loss covers the resumed steps only")
        try:
            train_result = trainer.train(resume_from_checkpoint=checkpoint)
        except Exception as exc:  # paddle.load, pickle and json raise many kinds for a damaged checkpoint file
            error = resume_error(exc, checkpoint) if checkpoint else None
            if error is None:
                raise
            raise error from None
        metrics = dict(train_result.metrics)
        check_finite_loss(metrics["train_loss"], trainer.state.global_step)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        best_dir = os.path.join(output_dir, BEST_DIR)
        if training_args.should_save:  # the best checkpoint by dev metric (load_best_model_at_end)
            save_best_model(trainer, tokenizer, task, best_dir, max_seq_length)
        if training_args.load_best_model_at_end:
            best_eval = best_checkpoint_eval_metrics(trainer.state)
        summary["best_model_dir"] = best_dir
        if trainer.state.best_model_checkpoint:
            summary["best_checkpoint"] = os.path.basename(trainer.state.best_model_checkpoint.rstrip(os.sep))
        summary["resumed_from"] = checkpoint
        summary["train"] = metrics

    if requested["do_eval"]:
        # after training, the Trainer evaluated the best checkpoint already: its logged metrics are these
        metrics = best_eval if best_eval is not None else trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        summary["eval"] = metrics
        if training_args.should_save:
            summary["eval_per_class"] = write_per_class_report(trainer, task, examples["dev"], encoded["dev"],
                                                               datasets["dev"], output_dir)  # fmt: skip

    if requested["do_predict"]:
        prediction = trainer.predict(datasets["test"])
        results = task.decode(examples["test"], encoded["test"], output_list(prediction.predictions))
        path = predictions_file(output_dir, task.name)
        if training_args.should_save:
            task.write_predictions(path, examples["test"], results)
            logger.info(f"Predictions for {len(examples['test'])} test examples written to {path}")
        summary["predict_file"] = path

    if requested["do_export"]:
        if training_args.should_save:
            export_inference_model(trainer.model, tokenizer, task, export_dir, max_seq_length)
            logger.info(f"Static inference model exported to {export_dir}")
        summary["export_dir"] = export_dir
    return summary
