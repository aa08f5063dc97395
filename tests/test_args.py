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


@pytest.mark.parametrize(
    "line, message",
    [
        ("learning_rate: abc", r"\[common\]: invalid value 'abc' for 'learning_rate'"),
        ("num_train_epochs: [1, 2]", r"\[common\]: invalid value \[1, 2\] for 'num_train_epochs' \(expected a single"),
        ("per_device_eval_batch_size: -4", r"\[common\]: 'per_device_eval_batch_size' must be a positive integer, got -4"),
        ("learning_rate: .nan", r"\[common\]: 'learning_rate' must be a positive finite number, got nan"),
    ],
)  # fmt: skip
def test_common_section_bad_values_are_caught_though_overridden(tmp_path, line, message):
    key = line.split(":")[0]
    good = {"learning_rate": "1.0e-4", "num_train_epochs": "2", "per_device_eval_batch_size": "8"}[key]
    config = tmp_path / "mine.yml"
    # the task's own section and the command line both override the bad value: it is still an error, naming the file
    config.write_text(f"common:\n  {line}\ntnews:\n  {key}: {good}\n", encoding="utf-8")
    with pytest.raises(UserError, match=message) as error:
        parse("--task_name", "tnews", "--config", str(config), f"--{key}", good)
    assert str(error.value).startswith(f"{config} [common]") and "\n" not in str(error.value)


def test_bad_value_in_another_file_section_is_caught(tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("seq_cls:\n  warmup_ratio: 3\ntnews:\n  warmup_ratio: 0.2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"mine.yml \[seq_cls\]: 'warmup_ratio' must be between 0 and 1, got 3"):
        parse("--task_name", "tnews", "--config", str(config))


def test_user_common_beats_shipped_seq_cls(tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("common:\n  learning_rate: 1.0e-4\n  per_device_eval_batch_size: 8\n  num_train_epochs: 7\n"
                      "tnews:\n  num_train_epochs: 4\n", encoding="utf-8")  # fmt: skip
    _, _, _, training_args = parse("--task_name", "tnews", "--config", str(config), "--per_device_eval_batch_size", "2")
    assert training_args.learning_rate == pytest.approx(1e-4)  # my [common] over config.yml's [seq_cls] 3e-5
    assert training_args.num_train_epochs == 4  # my [tnews] over my [common]
    assert training_args.per_device_eval_batch_size == 2  # the command line over both files
    assert training_args.per_device_train_batch_size == 32  # config.yml's [seq_cls] where my file says nothing


def test_user_compress_settings_beat_shipped_ones(tmp_path):
    from ernie3.args import DEFAULT_CONFIG, load_config_defaults
    from ernie3.tasks import get_task

    config = tmp_path / "mine.yml"
    config.write_text("common:\n  learning_rate: 1.0e-4\n  compress:\n    learning_rate: 5.0e-5\n", encoding="utf-8")
    merged = load_config_defaults(str(config), get_task("tnews"), for_compression=True)
    assert merged["learning_rate"] == (5.0e-5, str(config), "common.compress")  # over config.yml's common.compress
    assert merged["num_train_epochs"] == (1, DEFAULT_CONFIG, "common.compress")
    training = load_config_defaults(str(config), get_task("tnews"))
    assert training["learning_rate"] == (1.0e-4, str(config), "common")


def test_effective_settings_name_the_file_and_section_of_each_value(tmp_path, monkeypatch):
    import io

    from paddlenlp.utils.log import logger

    # paddlenlp's log handler holds the stderr of the test that imported it first: read the table from the handler
    stream = io.StringIO()
    monkeypatch.setattr(logger.handler, "stream", stream)
    config = tmp_path / "mine.yml"
    config.write_text("common:\n  learning_rate: 1.0e-4\n", encoding="utf-8")
    monkeypatch.setenv("ERNIE3_VERBOSE", "0")  # whatever --log_level info sets is undone after the test
    # the table goes to the run's log; --log_level info shows it on the terminal too
    parse("--task_name", "tnews", "--config", str(config), "--seed", "3", "--log_level", "info")
    lines = {line.split("=")[0].strip(): line for line in stream.getvalue().splitlines() if " = " in line}
    assert f"({config} [common])" in lines["learning_rate"]
    assert "(shipped config.yml [seq_cls])" in lines["per_device_train_batch_size"]
    assert "(command line)" in lines["seed"]
    assert "(default)" in lines["max_steps"]


def test_task_option_values_are_checked_in_every_section(tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("common:\n  doc_stride: -1\nqa:\n  doc_stride: 64\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"mine.yml \[common\]: --doc_stride must be a positive integer, got -1"):
        parse_arguments(["--task_name", "cmrc2018", "--config", str(config)], "qa")


def test_null_is_refused_where_the_flag_has_a_value(tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("common:\n  learning_rate: null\n  save_total_limit: null\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"\[common\]: 'learning_rate' must be a positive finite number, got None"):
        parse("--task_name", "tnews", "--config", str(config))
