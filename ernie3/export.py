"""Static-graph export for Paddle Inference, and the task record that travels with every model directory."""
from __future__ import annotations

import copy
import os
from typing import Any, Optional

from ernie3.errors import UserError
from ernie3.files import atomic_directory, write_json_atomic
from ernie3.layout import FAST_TOKENIZER_KEY, STATIC_MODEL_PREFIX, TASK_INFO_FILE
from ernie3.model_files import read_task_info
from ernie3.tasks import Task, get_task
from ernie3.vocab import save_tokenizer



def write_task_info(directory: str, task: Task, max_seq_length: int, verify_tokenizer: bool = False, **extra: Any) -> None:
    """ernie3_task.json. `verify_tokenizer` (a deployable model with its tokenizer files already in `directory`):
    also record whether the standalone tokenizer gives paddlenlp's results on them, so that predictors of
    OpenVINO/ONNX Runtime copies load it without paddlenlp (ernie3.standalone_tokenizer)."""
    info = {**task.describe(), "max_seq_length": max_seq_length, **extra}
    if verify_tokenizer:
        from ernie3.standalone_tokenizer import verify_model_tokenizer

        info[FAST_TOKENIZER_KEY] = verify_model_tokenizer(directory, task, max_seq_length)
    write_json_atomic(os.path.join(directory, TASK_INFO_FILE), info)


def apply_recorded_settings(
    model_dir: str, task: Task, max_seq_length: int, given: set[str]
) -> tuple[Task, int]:
    """The task options and max_seq_length a fine-tuned model was trained with (its ernie3_task.json).

    A flag given on the command line wins, with a warning when it differs from the recorded value; without a
    record (e.g. a pretrained model), the settings stay as they are.
    """
    from paddlenlp.utils.log import logger

    path = os.path.join(model_dir, TASK_INFO_FILE)
    if not os.path.isfile(path):
        return task, max_seq_length
    info = read_task_info(model_dir)
    recorded = {"max_seq_length": info.get("max_seq_length"), **(info.get("options") or {})}
    current = {"max_seq_length": max_seq_length, **task.options}
    chosen = {}
    for key, value in recorded.items():
        if value is None or key not in current:
            continue
        if key in given:
            if current[key] != value:
                logger.warning(
                    f"--{key} {current[key]} differs from the {value} that {model_dir} was fine-tuned with "
                    f"(recorded in {TASK_INFO_FILE}); using --{key} {current[key]} as given"
                )
            continue
        if current[key] != value:
            logger.info(f"Using {key} = {value} recorded with the model ({path})")
        chosen[key] = value
    max_seq_length = chosen.pop("max_seq_length", max_seq_length)
    try:
        task = task.with_options(**{**task.options, **chosen}) if chosen else task
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: bad task options ({exc})") from None
    return task, int(max_seq_length)


def task_of_model_dir(directory: str, expected_type: Optional[str] = None) -> Task:
    """The task a model directory was fine-tuned for; with `expected_type`, it must be of that type."""
    info = read_task_info(directory)
    try:
        task = get_task(info["task_name"])
    except UserError as exc:  # a record naming a task this toolkit does not know
        raise UserError(f"{os.path.join(directory, TASK_INFO_FILE)}: {exc}") from None
    if expected_type and task.task_type != expected_type:
        raise UserError(f"{directory} holds a {task.task_type} model ({task.name}), not a {expected_type} model")
    if list(task.labels) != list(info.get("labels", [])):
        raise UserError(f"{directory}: its labels differ from the {task.name} task definition")
    try:
        # the settings the model was trained and exported with (e.g. QA windows) are the ones to serve it with
        return task.with_options(**info.get("options", {}))
    except (TypeError, ValueError) as exc:
        raise UserError(f"{directory}/{TASK_INFO_FILE}: bad task options ({exc})") from None


def export_inference_model(model: Any, tokenizer: Any, task: Task, output_dir: str, max_seq_length: int) -> str:
    """Write model.pdmodel/.pdiparams, the tokenizer and the task record; all or nothing."""
    from paddlenlp.transformers import export_model

    with atomic_directory(output_dir) as staging:
        # to_static converts the layer in place; export a copy so the caller can keep using the dynamic model
        export_model(copy.deepcopy(model), input_spec=task.input_spec(), path=staging)
        save_tokenizer(tokenizer, staging)
        # the longest input the exported graph can take: stages that read the model check lengths against it
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        write_task_info(staging, task, max_seq_length, verify_tokenizer=True,
                        **({"max_position_embeddings": limit} if limit else {}))  # fmt: skip
    model_file = os.path.join(output_dir, STATIC_MODEL_PREFIX + ".pdmodel")
    if not os.path.isfile(model_file):
        raise UserError(f"export wrote no {model_file}; is FLAGS_enable_pir_api set to 1 in the environment?")
    return output_dir
