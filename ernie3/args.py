"""Command-line arguments: dataclasses for PdArgumentParser, with per-task defaults from config.yml."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import yaml

from ernie3.errors import UserError
from ernie3.tasks import Task, get_task

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config.yml")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="ernie-3.0-medium-zh",
        metadata={"help": "Hub name (ernie-3.0-{xbase,base,medium,mini,micro,nano}-zh) or a local model directory."},
    )
    export_model_dir: Optional[str] = field(
        default=None, metadata={"help": "Where --do_export writes the static model (default: OUTPUT_DIR/export)."}
    )


@dataclass
class DataArguments:
    task_name: Optional[str] = field(
        default=None, metadata={"help": "Task to run, e.g. tnews, afqmc (run_seq_cls.py), msra_ner, cmrc2018."}
    )
    train_file: Optional[str] = field(default=None, metadata={"help": "Local train file in the official format."})
    dev_file: Optional[str] = field(default=None, metadata={"help": "Local dev file in the official format."})
    test_file: Optional[str] = field(default=None, metadata={"help": "Local test file (labels not needed)."})
    max_seq_length: int = field(
        default=128, metadata={"help": "Longer inputs are truncated (QA: cut into windows) to this many tokens."}
    )
    skip_invalid_records: bool = field(
        default=False,
        metadata={"help": "Drop records that fail validation (each logged with its location) instead of stopping."},
    )
    config: str = field(default=DEFAULT_CONFIG, metadata={"help": "YAML file of per-task defaults."})


# config.yml sections applied in this order, later ones winning: all tasks, the task type, the task itself.
# A `compress:` mapping inside any of them holds settings of the compress scripts only, applied after the rest.
COMMON_SECTION = "common"
COMPRESS_KEY = "compress"


def load_config_defaults(path: str, task: Task, for_compression: bool = False) -> dict[str, Any]:
    """Merged defaults for `task` from the YAML config file: {flag: (value, section it came from)}."""
    if not os.path.isfile(path):
        raise UserError(f"--config: file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping of sections (common, task types, task names)")
    merged: dict[str, Any] = {}
    compress_sections = []
    for section in (COMMON_SECTION, task.task_type, task.name):
        values = config.get(section) or {}
        if not isinstance(values, dict):
            raise UserError(f"{path}: section '{section}' must be a mapping of flag names to values")
        compress_sections.append((f"{section}.{COMPRESS_KEY}", values.get(COMPRESS_KEY) or {}))
        merged.update({key: (value, section) for key, value in values.items() if key != COMPRESS_KEY})
    if for_compression:
        for section, values in compress_sections:
            if not isinstance(values, dict):
                raise UserError(f"{path}: '{section}' must be a mapping of flag names to values")
            merged.update({key: (value, section) for key, value in values.items()})
    return merged


def _checked_value(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """Convert a config value with the flag's own parser so that bad values fail like bad flags."""
    convert = action.type or (lambda v: v)
    try:
        if action.nargs in ("+", "*") or isinstance(action.nargs, int):
            items = value if isinstance(value, list) else [value]
            return [convert(str(item)) for item in items]
        if isinstance(value, (list, dict)):
            raise ValueError("expected a single value")
        return convert(str(value)) if value is not None else None
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise UserError(f"{where}: invalid value {value!r} for '{key}' ({exc})") from None


def given_on_command_line(argv: Sequence[str]) -> set[str]:
    return {token[2:].split("=", 1)[0] for token in argv if token.startswith("--")}


def parse_arguments(
    task_type: str,
    extra_dataclasses: Sequence[type] = (),
    argv: Optional[Sequence[str]] = None,
    for_compression: bool = False,
):
    """(task, model_args, data_args, training_args, *extra, requested) with config.yml defaults applied.

    `requested` holds the do_* flags exactly as the user set them, before TrainingArguments adjusts do_eval.
    For compression, training_args is paddlenlp's CompressionArguments and the `compress:` settings apply.
    """
    from paddlenlp.trainer import CompressionArguments, PdArgumentParser, TrainingArguments

    argv = list(sys.argv[1:] if argv is None else argv)
    arguments_class = CompressionArguments if for_compression else TrainingArguments
    parser = PdArgumentParser((ModelArguments, DataArguments, arguments_class, *extra_dataclasses))
    actions = {action.dest: action for action in parser._actions}
    # the output directory defaults to output/<task>, so the flag is not required
    actions["output_dir"].required = False
    if any(token in ("-h", "--help") for token in argv):
        parser.parse_args(argv)

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task_name")
    pre.add_argument("--config", default=DEFAULT_CONFIG)
    known, _ = pre.parse_known_args(argv)
    task = get_task(known.task_name, task_type)

    output_dir = os.path.join("output", task.name, "compress") if for_compression else os.path.join("output", task.name)
    defaults: dict[str, Any] = {
        "output_dir": output_dir,
        "metric_for_best_model": task.metric_name,
        "device": default_device(),
    }
    sources = {key: "built-in" for key in defaults}
    for key, (value, section) in load_config_defaults(known.config, task, for_compression).items():
        where = f"{known.config} [{section}]"
        if key not in actions or key in ("task_name", "config", "help"):
            raise UserError(f"{where}: unknown setting '{key}' (settings are the scripts' flag names)")
        defaults[key] = _checked_value(actions[key], key, value, where)
        sources[key] = f"{os.path.basename(known.config)} [{section}]"
    parser.set_defaults(**defaults)

    namespace = parser.parse_args(argv)
    check_device(namespace.device)
    requested = {flag: bool(getattr(namespace, flag)) for flag in ("do_train", "do_eval", "do_predict", "do_export")}
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except ValueError as exc:  # TrainingArguments.__post_init__ rejects inconsistent settings
        raise UserError(f"invalid arguments: {exc}") from None
    cli = given_on_command_line(argv)
    sources.update({key: "command line" for key in cli})
    log_effective_settings(namespace, sources)
    return (task, *parsed, requested)


def default_device() -> str:
    import paddle

    return "gpu" if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"


def check_device(device: str) -> None:
    import paddle

    if device.startswith("gpu") and not paddle.is_compiled_with_cuda():
        raise UserError(f"--device {device}: this paddle build is CPU-only (install paddlepaddle-gpu for GPUs)")
    if not (device == "cpu" or device.startswith("gpu")):
        raise UserError(f"--device {device}: choose cpu or gpu (gpu:N for one card)")


SHOWN_SETTINGS = (
    "task_name", "model_name_or_path", "train_file", "dev_file", "test_file", "output_dir", "device", "max_seq_length",
    "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size",
    "warmup_ratio", "weight_decay", "seed", "metric_for_best_model",
)  # fmt: skip


def log_effective_settings(namespace: argparse.Namespace, sources: dict[str, str]) -> None:
    """Print the settings a run uses, and where each non-default one came from."""
    from paddlenlp.utils.log import logger

    shown = list(SHOWN_SETTINGS) + sorted(k for k in sources if k not in SHOWN_SETTINGS)
    lines = []
    for key in shown:
        if not hasattr(namespace, key):
            continue
        origin = sources.get(key, "default")
        lines.append(f"  {key:<28} = {getattr(namespace, key)!s:<40} ({origin})")
    logger.info("Effective settings:\n" + "\n".join(lines))
