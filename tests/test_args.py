"""config.yml defaults, command-line overrides, and clear errors for bad settings."""
import pytest

from ernie3.args import parse_arguments
from ernie3.errors import UserError


def parse(*argv):
    parsed = parse_arguments(list(argv), "seq_cls")
    return parsed.task, parsed.model, parsed.data, parsed.training


def test_config_supplies_per_task_defaults():
    _, model_args, data_args, training_args = parse("--task_name", "csl")
    assert model_args.model_name_or_path == "ernie-3.0-medium-zh"  # [common]
    assert data_args.max_seq_length == 256  # [csl] wins over [seq_cls]
    assert training_args.learning_rate == pytest.approx(1e-5)
    assert training_args.num_train_epochs == 8
    assert training_args.output_dir == "output/csl"
    assert training_args.metric_for_best_model == "accuracy" and training_args.load_best_model_at_end


def test_command_line_overrides_config():
    _, _, data_args, training_args = parse(
        "--task_name", "csl", "--learning_rate", "2e-4", "--max_seq_length", "64", "--output_dir", "/tmp/x",
        "--load_best_model_at_end", "false",
    )  # fmt: skip
    assert training_args.learning_rate == pytest.approx(2e-4)
    assert data_args.max_seq_length == 64
    assert training_args.output_dir == "/tmp/x"
    assert training_args.load_best_model_at_end is False


def test_unknown_setting_in_config_is_an_error(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("tnews:\n  learnig_rate: 1.0e-4\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"\[tnews\]: unknown setting 'learnig_rate'"):
        parse("--task_name", "tnews", "--config", str(config))


def test_bad_value_in_config_is_an_error(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("seq_cls:\n  max_seq_length: long\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"\[seq_cls\]: invalid value 'long' for 'max_seq_length'"):
        parse("--task_name", "tnews", "--config", str(config))


def test_task_is_required_and_must_fit_the_script():
    with pytest.raises(UserError, match="--task_name is required"):
        parse()
    with pytest.raises(UserError, match="unknown seq_cls task 'squad'"):
        parse("--task_name", "squad")


def test_a_one_section_config_layers_over_the_project_config(tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("tnews:\n  learning_rate: 1.0e-4\n", encoding="utf-8")
    _, _, data_args, training_args = parse("--task_name", "tnews", "--config", str(config))
    assert training_args.learning_rate == pytest.approx(1e-4)  # my section wins
    assert data_args.max_seq_length == 128 and training_args.num_train_epochs == 3  # config.yml's still apply
    assert training_args.load_best_model_at_end and training_args.metric_for_best_model == "accuracy"
    assert training_args.evaluation_strategy.value == training_args.save_strategy.value == "epoch"


def test_best_model_by_metric_whatever_the_config_says(tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("common:\n  evaluation_strategy: 'no'\n  save_strategy: steps\n  load_best_model_at_end: false\n"
                      "  metric_for_best_model: loss\n", encoding="utf-8")  # fmt: skip
    for flags in ([], ["--config_replace"]):
        _, _, _, training_args = parse("--task_name", "tnews", "--config", str(config), *flags)
        assert training_args.load_best_model_at_end and training_args.metric_for_best_model == "accuracy"
        assert training_args.greater_is_better
        assert training_args.evaluation_strategy.value == training_args.save_strategy.value == "steps"


def test_config_replace_uses_only_the_given_file(tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("tnews:\n  learning_rate: 1.0e-4\n", encoding="utf-8")
    _, model_args, data_args, training_args = parse("--task_name", "tnews", "--config", str(config), "--config_replace")
    assert training_args.learning_rate == pytest.approx(1e-4)
    assert data_args.max_seq_length == 128  # the flag's own default, not config.yml's [seq_cls]
    assert training_args.num_train_epochs == 1.0  # TrainingArguments' default, not config.yml's 3
    assert model_args.model_name_or_path == "ernie-3.0-medium-zh"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learning_rate", "nan"], "--learning_rate must be a positive finite number, got nan"),
        (["--eval_steps", "0", "--evaluation_strategy", "steps"], "--eval_steps must be a positive number of steps"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be a positive integer, got 0"),
        (["--save_steps", "7", "--eval_steps", "5", "--evaluation_strategy", "steps", "--save_strategy", "steps"],
         "invalid arguments: --load_best_model_at_end requires the saving steps to be a round multiple"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_errors(argv, message):
    with pytest.raises(UserError, match=message) as error:
        parse("--task_name", "tnews", *argv)
    assert "\n" not in str(error.value)


def test_config_yml_holds_only_what_recipes_change():
    """One home per default: a value in config.yml must change what the flag's dataclass default (or an earlier
    section) gives, else it is a second copy that can drift."""
    from paddlenlp.trainer import CompressionArguments, PdArgumentParser, TrainingArguments

    from ernie3.args import DEFAULT_CONFIG, DataArguments, ModelArguments, read_config_file
    from ernie3.compress import CandidateEvaluationArguments
    from ernie3.tasks import TASKS

    task_classes = {task.options_class for task in TASKS.values() if task.options_class}
    def defaults_of(*dataclasses) -> dict:
        parser = PdArgumentParser((ModelArguments, DataArguments, *dataclasses))
        found = {action.dest: action.default for action in parser._actions}
        for options_class in task_classes:
            found.update(vars(options_class()))
        return found

    # compress runs have their own defaults (e.g. warmup_ratio), under the same sections plus `compress:`
    training_defaults = defaults_of(TrainingArguments)
    compress_defaults = defaults_of(CompressionArguments, CandidateEvaluationArguments)
    config = read_config_file(DEFAULT_CONFIG)

    def same(a, b) -> bool:
        return str(a).lower() == str(b).lower() or (isinstance(a, list) and [str(x) for x in a] == [str(x) for x in b or []])

    repeats = set()
    for task in TASKS.values():
        effective = dict(training_defaults)
        sections = [(name, config.get(name) or {}) for name in ("common", *task.config_sections())]
        for name, values in sections:
            for key, value in values.items():
                if key != "compress":
                    if key in effective and same(value, effective[key]):
                        repeats.add(f"[{name}] {key}: {value}")
                    effective[key] = value
        effective = {**compress_defaults, **{k: v for name, values in sections for k, v in values.items()}}
        for name, values in sections:
            for key, value in (values.get("compress") or {}).items():
                if key in effective and same(value, effective[key]):
                    repeats.add(f"[{name}.compress] {key}: {value}")
                effective[key] = value
    assert not repeats, f"config.yml repeats defaults: {sorted(repeats)}"
