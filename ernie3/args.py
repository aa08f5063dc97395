"""Command-line arguments: dataclasses for PdArgumentParser, with per-task defaults from config.yml."""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import yaml

from ernie3.errors import UserError
from ernie3.logs import begin_run_log, configure_run_logging
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
    config: str = field(
        default=DEFAULT_CONFIG,
        metadata={
            "help": "YAML per-task defaults, read after the project's config.yml (its values win at every level)."
        },
    )
    config_replace: bool = field(
        default=False, metadata={"help": "Use --config instead of the project's config.yml, not layered over it."}
    )


@dataclass
class LoggingArguments:
    verbose: bool = field(
        default=False,
        metadata={"help": "Also show the libraries' INFO lines (paddlenlp's argument dump, per-step logs) and "
                          "Paddle's native logs in the terminal; they always go to OUTPUT_DIR/ernie3.log."},
    )
    log_level: Optional[str] = field(
        default=None,
        metadata={"help": "Terminal threshold for library logs: debug, info, warning (default) or error."},
    )


# config.yml sections, read in this order, later ones winning: all tasks, the task type, the task itself (a task
# may name more: Task.config_sections). The project's config.yml is read whole first, then the user's --config file
# whole, so a user value wins over a shipped one at every level (the user's [common] over the shipped [seq_cls]).
# A `compress:` mapping inside any section holds settings of the compress scripts only, applied after the rest
# in the same order (shipped, then the user's).
COMMON_SECTION = "common"
COMPRESS_KEY = "compress"


def read_config_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"--config: file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--config: cannot read {path} ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping of sections (common, task types, task names)")
    return config


def config_files(path: str, replace: bool = False) -> list[str]:
    """The YAML files to read, later ones winning: the project's config.yml, then the user's --config over it."""
    if replace or os.path.abspath(path) == os.path.abspath(DEFAULT_CONFIG):
        return [path]
    return [DEFAULT_CONFIG, path]


def config_layers(path: str, task: Task, for_compression: bool = False, replace: bool = False) -> list[tuple]:
    """(file, section, {flag: value}) for every section that applies to `task`, in order, later ones winning."""
    configs = [(file, read_config_file(file)) for file in config_files(path, replace)]
    layers, compress_layers = [], []
    for file, config in configs:
        for section in (COMMON_SECTION, *task.config_sections()):
            values = config.get(section) or {}
            if not isinstance(values, dict):
                raise UserError(f"{file}: section '{section}' must be a mapping of flag names to values")
            layers.append((file, section, {key: value for key, value in values.items() if key != COMPRESS_KEY}))
            compress = values.get(COMPRESS_KEY) or {}
            if for_compression and not isinstance(compress, dict):
                raise UserError(f"{file}: '{section}.{COMPRESS_KEY}' must be a mapping of flag names to values")
            compress_layers.append((file, f"{section}.{COMPRESS_KEY}", compress))
    return layers + compress_layers if for_compression else layers


def load_config_defaults(
    path: str,
    task: Task,
    for_compression: bool = False,
    replace: bool = False,
    check: Optional[Callable[[str, Any, str, str], Any]] = None,
) -> dict[str, Any]:
    """Merged defaults for `task`: {flag: (value, file, section)}, in the order of `config_layers`.

    `check(key, value, file, section)` sees every value of every section read, also those a later one overrides,
    and returns the value to use (converted) or raises a UserError naming the file and section.
    """
    merged: dict[str, Any] = {}
    for file, section, values in config_layers(path, task, for_compression, replace):
        for key, value in values.items():
            merged[key] = (check(key, value, file, section) if check else value, file, section)
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


@dataclass
class RunArguments:
    """Everything a training or compress run was asked for, parsed and checked."""

    task: Task
    model: ModelArguments
    data: DataArguments
    #: paddlenlp's TrainingArguments (CompressionArguments for compress runs)
    training: Any
    #: the extra dataclasses the caller asked for, by class (e.g. compress's candidate evaluation settings)
    extra: dict[type, Any]
    #: the do_* flags exactly as the user set them, before TrainingArguments adjusts do_eval
    requested: dict[str, bool]
    #: flags given on the command line (they win over a fine-tuned model's recorded settings)
    given: set[str]


def task_options_classes(task_type: Optional[str]) -> list[type]:
    """The task-specific flag dataclasses of every task of `task_type` (all types if None), for --help."""
    from ernie3.tasks import tasks_of_type

    return list(dict.fromkeys(t.options_class for t in tasks_of_type(task_type) if t.options_class is not None))


def task_flags_epilog(task_type: Optional[str]) -> Optional[str]:
    """For --help without a task: which tasks add flags of their own, and how to see them."""
    from ernie3.tasks import tasks_of_type

    names_by_class: dict[type, list[str]] = {}
    for task in tasks_of_type(task_type):
        if task.options_class is not None:
            names_by_class.setdefault(task.options_class, []).append(task.name)
    lines = [
        f"{', '.join(names)}: {' '.join('--' + f.name for f in dataclasses.fields(options_class))}"
        for options_class, names in names_by_class.items()
    ]
    if not lines:
        return None
    return "task flags (shown with --task_name NAME --help): " + "; ".join(lines)


def parse_arguments(
    argv: Optional[Sequence[str]] = None,
    task_type: Optional[str] = None,
    extra_dataclasses: Sequence[type] = (),
    for_compression: bool = False,
) -> RunArguments:
    """Parse and check a run's flags, with config.yml defaults applied and the task's own flags added.

    `task_type` restricts --task_name (run_seq_cls.py accepts only seq_cls tasks). The task's `options_class`
    (e.g. QA's --doc_stride) is parsed too and turned into the task's options.
    For compression, the training arguments are paddlenlp's CompressionArguments and the `compress:` settings apply.
    """
    from paddlenlp.trainer import CompressionArguments, PdArgumentParser, TrainingArguments

    argv = list(sys.argv[1:] if argv is None else argv)
    training_class = CompressionArguments if for_compression else TrainingArguments
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task_name")
    pre.add_argument("--config", default=DEFAULT_CONFIG)
    pre.add_argument("--config_replace", nargs="?", const="true", default="false")
    pre.add_argument("--verbose", nargs="?", const="true", default="false")
    pre.add_argument("--log_level")
    known, _ = pre.parse_known_args(argv)
    # before anything logs: library records are held for the run's log file, the terminal gets warnings only
    begin_run_log(known.log_level, str(known.verbose).lower() in ("true", "1", "yes", "y"))
    asks_help = any(token in ("-h", "--help") for token in argv)
    task = get_task(known.task_name, task_type) if known.task_name or not asks_help else None
    if task is not None:
        task_classes = [task.options_class] if task.options_class else []
    else:  # --help without a task: the flags of every task of this type (types may share flag names)
        task_classes = task_options_classes(task_type)[:1] if task_type else []
    dataclasses_ = (ModelArguments, DataArguments, training_class, LoggingArguments, *extra_dataclasses, *task_classes)
    parser = PdArgumentParser(dataclasses_, epilog=task_flags_epilog(task_type) if task is None else None)
    actions = {action.dest: action for action in parser._actions}
    # the output directory defaults to output/<task>, so the flag is not required
    actions["output_dir"].required = False
    if task is None:
        parser.parse_args(argv)  # prints the help and exits
    replace = str(known.config_replace).lower() in ("true", "1", "yes", "y")

    defaults = task_dependent_defaults(task, for_compression)
    sources = {key: "built-in" for key in defaults}

    def check(key: str, value: Any, file: str, section: str) -> Any:
        where = f"{file} [{section}]"
        if key not in actions or key in ("task_name", "config", "config_replace", "help"):
            raise UserError(f"{where}: unknown setting '{key}' (settings are the scripts' flag names)")
        converted = _checked_value(actions[key], key, value, where)
        problem = setting_problem(key, converted)
        if problem:
            raise UserError(f"{where}: '{key}' {problem}, got {value!r}")
        options_class = task.options_class
        if options_class is not None and key in {f.name for f in dataclasses.fields(options_class)}:
            try:  # the task's own checks, on this value with the others at their defaults
                options_class(**{key: converted})
            except ValueError as exc:
                raise UserError(f"{where}: {exc}") from None
        return converted

    merged = load_config_defaults(known.config, task, for_compression, replace, check)
    for key, (value, file, section) in merged.items():
        defaults[key] = value
        sources[key] = f"{config_label(file)} [{section}]"
    cli = given_on_command_line(argv)
    if not for_compression:
        current = {key: defaults.get(key, action.default) for key, action in actions.items()}
        for key, value in best_model_settings(task, current, cli).items():
            defaults[key], sources[key] = value, "built-in: best/ is the best checkpoint by dev metric"
    parser.set_defaults(**defaults)

    namespace = parser.parse_args(argv)
    check_device(namespace.device)
    check_training_settings(namespace, for_compression)
    requested = {flag: bool(getattr(namespace, flag)) for flag in ("do_train", "do_eval", "do_predict", "do_export")}
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except ValueError as exc:  # TrainingArguments.__post_init__ and task flag checks reject inconsistent settings
        raise UserError(f"invalid arguments: {' '.join(str(exc).split())}") from None
    sources.update({key: "command line" for key in cli})
    # at INFO: into the run's log file (and the terminal only with --verbose), never ahead of an error line
    log_effective_settings(namespace, sources)
    model_args, data_args, training_args, logging_args, *rest = parsed
    configure_run_logging(logging_args.log_level, logging_args.verbose)  # config.yml may set them too
    extra = dict(zip(extra_dataclasses, rest[: len(extra_dataclasses)]))
    for options in rest[len(extra_dataclasses) :]:
        task = task.with_options(**dataclasses.asdict(options))
    return RunArguments(task, model_args, data_args, training_args, extra, requested, cli)


def task_dependent_defaults(task: Task, for_compression: bool) -> dict[str, Any]:
    """The defaults no dataclass or config.yml can hold, because they depend on the task or the machine."""
    output_dir = os.path.join("output", task.name, "compress") if for_compression else os.path.join("output", task.name)
    return {"output_dir": output_dir, "metric_for_best_model": task.metric_name, "device": default_device()}


def best_model_settings(task: Task, defaults: dict[str, Any], cli: set[str]) -> dict[str, Any]:
    """Settings that make `best/` the best checkpoint by the task's dev metric, whatever a config file says.

    Flags given on the command line are the user's explicit choice and are left as they are.
    """
    forced: dict[str, Any] = {}
    wanted = {"load_best_model_at_end": True, "metric_for_best_model": task.metric_name,
              "greater_is_better": task.higher_is_better}  # fmt: skip
    for key, value in wanted.items():
        if key not in cli and defaults.get(key) != value:
            forced[key] = value
    evaluation = str(defaults.get("evaluation_strategy") or "no")
    save = str(defaults.get("save_strategy") or "steps")
    if "evaluation_strategy" not in cli and evaluation == "no":
        evaluation = forced["evaluation_strategy"] = save if save != "no" else "epoch"
    if "save_strategy" not in cli and save != evaluation:
        forced["save_strategy"] = evaluation
    eval_steps, save_steps = defaults.get("eval_steps") or defaults.get("logging_steps"), defaults.get("save_steps")
    if evaluation == "steps" and "save_steps" not in cli and eval_steps and save_steps and save_steps % eval_steps:
        forced["save_steps"] = eval_steps
    return forced


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_count(value: Any) -> bool:
    return _finite(value) and value > 0


def _at_least_zero(value: Any) -> bool:
    return _finite(value) and value >= 0


#: flag → (accepts the value, what it must be): checked on every value of every config section read and on the
#: final settings, so a bad value fails with one line wherever it is written, even if something overrides it
SETTING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{name: (_positive_count, "must be a positive integer")
       for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")},
    "learning_rate": (_positive_count, "must be a positive finite number"),
    "num_train_epochs": (_at_least_zero, "must be a finite number >= 0"),
    "max_steps": (lambda v: _finite(v) and (v == -1 or v > 0),
                  "must be a positive number of steps (or -1 to train --num_train_epochs)"),
    "warmup_ratio": (lambda v: _finite(v) and 0 <= v <= 1, "must be between 0 and 1"),
    **{name: (_at_least_zero, "must be a finite number >= 0")
       for name in ("warmup_steps", "seed", "max_grad_norm", "dataloader_num_workers", "weight_decay")},
    **{name: (_at_least_zero, "must be a number of steps >= 0")
       for name in ("eval_steps", "save_steps", "logging_steps")},
    "max_seq_length": (_positive_count, "must be a positive number of tokens"),
    "save_total_limit": (_at_least_zero, "must be >= 0"),
    **{name: (lambda v: isinstance(v, list) and all(_positive_count(x) for x in v), "takes positive numbers")
       for name in ("batch_size_list", "batch_num_list")},
}  # fmt: skip


#: settings whose default is None (unset); any other setting given as `null` in a config file is an error
NULLABLE_SETTINGS = {"eval_steps", "save_total_limit", "batch_size_list", "batch_num_list"}


def setting_problem(name: str, value: Any) -> Optional[str]:
    """What is wrong with one setting's value on its own ("must be ..."), or None if nothing is."""
    rule = SETTING_RULES.get(name)
    if rule is None or (value is None and name in NULLABLE_SETTINGS):
        return None
    accepts, requirement = rule
    return None if accepts(value) else requirement


def check_training_settings(namespace: argparse.Namespace, for_compression: bool = False) -> None:
    """Reject settings that would crash late, train nothing, or train a NaN model; one line naming the flag."""
    for name in SETTING_RULES:
        value = getattr(namespace, name, None)
        problem = setting_problem(name, value)
        if problem:
            raise UserError(f"--{name} {problem}, got {value}")
    if namespace.max_steps == -1 and namespace.num_train_epochs == 0 and namespace.do_train:
        raise UserError("--num_train_epochs 0 trains nothing; give a positive number of epochs or --max_steps")
    strategies = {
        "evaluation_strategy": "eval_steps", "save_strategy": "save_steps", "logging_strategy": "logging_steps"
    }  # fmt: skip
    for strategy, steps_flag in strategies.items():
        steps = getattr(namespace, steps_flag, None)
        by_steps = str(getattr(namespace, strategy, "")) in ("steps", "IntervalStrategy.STEPS")
        if by_steps and steps is not None and steps <= 0:
            raise UserError(f"--{steps_flag} must be a positive number of steps with --{strategy} steps, got {steps}")


def check_max_seq_length(max_seq_length: int, tokenizer: Any, max_positions: Optional[int]) -> None:
    """`--max_seq_length` must hold the special tokens and some text, and fit the model's position embeddings."""
    special = tokenizer.num_special_tokens_to_add(pair=True)
    if max_seq_length < special + 2:
        raise UserError(
            f"--max_seq_length {max_seq_length} is too small: {special} special tokens leave no room for text "
            f"(use at least {special + 2})"
        )
    if max_positions and max_seq_length > max_positions:
        raise UserError(
            f"--max_seq_length {max_seq_length} is larger than the model's max_position_embeddings ({max_positions})"
        )


def default_device() -> str:
    import paddle

    return "gpu" if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"


def check_device(device: str) -> None:
    import paddle

    if device.startswith("gpu") and not paddle.is_compiled_with_cuda():
        raise UserError(f"--device {device}: this paddle build is CPU-only (install paddlepaddle-gpu for GPUs)")
    if not (device == "cpu" or device.startswith("gpu")):
        raise UserError(f"--device {device}: choose cpu or gpu (gpu:N for one card)")


def config_label(file: str) -> str:
    """How the settings table names a config file: the shipped one as such, the user's by the path given."""
    if os.path.abspath(file) == os.path.abspath(DEFAULT_CONFIG):
        return "shipped config.yml"
    return file


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
