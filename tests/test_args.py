"""config.yml defaults, command-line overrides, and clear errors for bad settings."""
import pytest

from ernie3.args import parse_arguments
from ernie3.errors import UserError


def parse(*argv):
    task, model_args, data_args, training_args, requested = parse_arguments("seq_cls", argv=list(argv))
    return task, model_args, data_args, training_args


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
