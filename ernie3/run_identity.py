"""What a training run is (its task, its starting model, its data files), recorded in the output dir's run record,
so that a later run into the same dir resumes only a run of the same model and task, never silently another's."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping, Optional

from ernie3.errors import UserError
from ernie3.files import content_fingerprint

#: files of a model dir that make it the model it is: its config and its weights (not the tokenizer or the record)
MODEL_CONFIG_FILES = ("config.json", "model_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".pdparams")
#: config keys whose change makes a checkpoint's weights not fit the model (a resume would fail on shapes)
SHAPE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size", "task_type_vocab_size", "num_labels")  # fmt: skip


def model_identity(name_or_path: str) -> dict:
    """A hub name as given; a local model dir by its path and a fingerprint of its config and weights files
    (the same for a copy of the dir, different for other weights)."""
    if not os.path.isdir(name_or_path):
        return {"name": name_or_path}
    digest = hashlib.sha256()
    for entry in sorted(os.listdir(name_or_path)):
        if entry in MODEL_CONFIG_FILES or entry.endswith(WEIGHT_SUFFIXES):
            path = os.path.join(name_or_path, entry)
            if os.path.isfile(path):
                digest.update(json.dumps([entry, content_fingerprint(path)]).encode())
    return {"path": os.path.abspath(name_or_path), "fingerprint": digest.hexdigest()[:16]}


def data_identity(files: Mapping[str, Optional[str]]) -> dict:
    """{split: fingerprint} of the local data files a run reads (online datasets are named by the task)."""
    return {split: {"path": os.path.abspath(path), **content_fingerprint(path)}
            for split, path in files.items() if path and os.path.isfile(path)}  # fmt: skip


def same_model(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    if "fingerprint" in first and "fingerprint" in second:
        return first["fingerprint"] == second["fingerprint"]
    return first.get("name") is not None and first.get("name") == second.get("name")


def describe_model(identity: Mapping[str, Any]) -> str:
    return identity.get("path") or identity.get("name") or "an unrecorded model"


def _config(directory: str) -> dict:
    for name in MODEL_CONFIG_FILES:
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(config, dict):
            if "num_labels" not in config and isinstance(config.get("id2label"), dict):
                config["num_labels"] = len(config["id2label"])
            return config
    return {}


def shape_differences(checkpoint: str, model_dir: str) -> list[str]:
    """Config values that differ between a checkpoint and a model dir, as 'key a → b'."""
    saved, wanted = _config(checkpoint), _config(model_dir)
    return [f"{key} {saved[key]} → {wanted[key]}" for key in SHAPE_KEYS
            if key in saved and key in wanted and saved[key] != wanted[key]]  # fmt: skip


def check_resume(record: Optional[Mapping[str, Any]], checkpoint: str, task_name: str, model_name_or_path: str,
                 model: Mapping[str, Any], on_purpose: bool = False) -> None:
    """Refuse (one line) to resume `checkpoint` when it came from another task or model, or holds another shape.
    `on_purpose` (--resume_from_checkpoint): the user chose the checkpoint, so only what cannot work is refused."""
    advice = ("pass --overwrite_output_dir to start over from the new model, or choose a new --output_dir "
              "(or --resume_from_checkpoint to continue that run on purpose)")  # fmt: skip
    record = record or {}
    recorded_task = record.get("task")
    if recorded_task and recorded_task != task_name:
        raise UserError(f"{checkpoint} is a checkpoint of a {recorded_task} run, not {task_name}: {advice}")
    recorded_model = record.get("model")
    if not on_purpose and isinstance(recorded_model, dict) and not same_model(recorded_model, model):
        raise UserError(f"{checkpoint} continues a run that started from {describe_model(recorded_model)}, not "
                        f"{describe_model(model)}: resuming it would keep the old weights; {advice}")  # fmt: skip
    if os.path.isdir(model_name_or_path):
        differences = shape_differences(checkpoint, model_name_or_path)
        if differences:
            raise UserError(f"{checkpoint} holds a model of another shape than {model_name_or_path} "
                            f"({', '.join(differences)}): {advice}")  # fmt: skip


def changed_data(record: Optional[Mapping[str, Any]], data: Mapping[str, Any]) -> list[str]:
    """Splits whose data file differs from the one the recorded run read."""
    recorded = (record or {}).get("data")
    if not isinstance(recorded, dict):
        return []
    changed = []
    for split, now in data.items():
        before = recorded.get(split)
        if isinstance(before, dict) and (before.get("size"), before.get("sha256_ends")) != (now["size"], now["sha256_ends"]):
            changed.append(split)
    return changed


def resume_error(exc: BaseException, checkpoint: str) -> Optional[UserError]:
    """One line for a checkpoint whose weights or optimizer state do not fit the model (shape mismatch), or whose
    files cannot be read (damaged); None for any other error."""
    text = str(exc)
    if "shape not match" in text.lower() or "shape mismatch" in text.lower():
        lines = [line.strip() for line in text.splitlines() if "hape" in line]
        detail = lines[0][:160] if lines else type(exc).__name__
        return UserError(f"{checkpoint} does not fit the model being trained ({detail}): pass --overwrite_output_dir "
                         "to start over, or choose a new --output_dir")  # fmt: skip
    if raised_while_loading_checkpoint(exc):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = (lines[-1] if lines else type(exc).__name__)[:200]
        return UserError(f"{checkpoint} is damaged and cannot be resumed ({type(exc).__name__}: {detail}): pass "
                         "--overwrite_output_dir to start over, --resume_from_checkpoint an earlier checkpoint-N, "
                         "or choose a new --output_dir")  # fmt: skip
    return None


#: the Trainer methods that read a checkpoint's files on resume (weights, optimizer/scheduler, RNG, trainer state)
CHECKPOINT_READERS = frozenset({"_load_from_checkpoint", "_load_optimizer_and_scheduler", "_load_rng_state",
                                "load_from_json"})  # fmt: skip


def raised_while_loading_checkpoint(exc: BaseException) -> bool:
    """Whether `exc` came from reading a checkpoint's files (a truncated, garbage or missing file), judged by the
    frames it passed through: an error anywhere else in training is not blamed on the checkpoint."""
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name in CHECKPOINT_READERS:
            return True
        frame = frame.tb_next
    return False
