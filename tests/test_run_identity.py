"""A training output dir knows which model, task and data its checkpoints came from (issue 19): a run with another
model refuses to resume them with one line; a genuine resume says so on stdout; shape mismatches are one line."""
import json
import os
import shutil

import pytest
from conftest import sample_file

from ernie3.errors import UserError, run_cli
from ernie3.files import RUN_RECORD
from ernie3.run_identity import model_identity, resume_error
from ernie3.train import run


def argv(model_dir, output_dir, steps, *extra):
    return [
        "--task_name", "tnews", "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir),
        "--train_file", sample_file("tnews", "train"), "--dev_file", sample_file("tnews", "dev"),
        "--learning_rate", "1e-3", "--per_device_train_batch_size", "16", "--max_steps", str(steps),
        "--evaluation_strategy", "no", "--load_best_model_at_end", "false", "--save_strategy", "steps", "--save_steps", "3",
        "--do_train", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def other_models(tmp_path_factory):
    """Two more random models: one of the tiny model's shape (other weights), one of another shape."""
    from ernie3.modeling import build_tiny_model

    root = tmp_path_factory.mktemp("other-models")
    same_shape = build_tiny_model(str(root / "same-shape"), seed=7)
    other_shape = build_tiny_model(str(root / "other-shape"), hidden_size=32, intermediate_size=64, seed=7)
    return {"same_shape": same_shape, "other_shape": other_shape}


@pytest.fixture
def started_run(tiny_model_dir, tmp_path):
    """An output dir holding checkpoint-3 of a tnews run from the tiny model."""
    output_dir = tmp_path / "out"
    run("seq_cls", argv(tiny_model_dir, output_dir, 3))
    assert os.path.isdir(output_dir / "checkpoint-3")
    return output_dir


def refusal(capsys, model_dir, output_dir, *extra) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: run("seq_cls", argv(model_dir, output_dir, 6, *extra)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert not os.path.exists(output_dir / "checkpoint-6")  # nothing trained
    return lines[0]


def test_the_run_record_names_the_model_and_the_data(tiny_model_dir, started_run):
    with open(started_run / RUN_RECORD, encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["task"] == "tnews"
    assert record["model"] == model_identity(tiny_model_dir)
    assert record["model"]["path"] == os.path.abspath(tiny_model_dir) and len(record["model"]["fingerprint"]) == 16
    assert set(record["data"]) == {"train", "dev"} and record["data"]["train"]["size"] > 0


def test_a_copy_of_the_model_is_the_same_model_and_other_weights_are_not(tiny_model_dir, other_models, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert model_identity(str(copy))["fingerprint"] == model_identity(tiny_model_dir)["fingerprint"]
    assert model_identity(other_models["same_shape"])["fingerprint"] != model_identity(tiny_model_dir)["fingerprint"]
    assert model_identity("ernie-3.0-medium-zh") == {"name": "ernie-3.0-medium-zh"}


def test_another_model_of_the_same_shape_does_not_resume_the_old_checkpoint(capsys, other_models, started_run):
    record_before = (started_run / RUN_RECORD).read_bytes()
    line = refusal(capsys, other_models["same_shape"], started_run)
    assert "checkpoint-3 continues a run that started from" in line and "--overwrite_output_dir" in line
    assert "--output_dir" in line
    assert (started_run / RUN_RECORD).read_bytes() == record_before


def test_a_model_of_another_shape_is_one_line_even_without_a_recorded_model(capsys, other_models, started_run):
    line = refusal(capsys, other_models["other_shape"], started_run)
    assert "continues a run that started from" in line
    # a record written by an older version names no model: the checkpoint's config still shows the other shape
    with open(started_run / RUN_RECORD, encoding="utf-8") as handle:
        record = json.load(handle)
    del record["model"]
    (started_run / RUN_RECORD).write_text(json.dumps(record), encoding="utf-8")
    line = refusal(capsys, other_models["other_shape"], started_run)
    assert "holds a model of another shape" in line and "hidden_size 64 → 32" in line


def test_a_genuine_resume_says_so_on_stdout(capsys, tiny_model_dir, started_run):
    summary = run("seq_cls", argv(tiny_model_dir, started_run, 6))
    assert summary["resumed_from"].endswith("checkpoint-3")
    out = capsys.readouterr().out
    assert f"Resuming training from {started_run / 'checkpoint-3'}" in out


def test_changed_data_is_noted_on_resume(capsys, tiny_model_dir, started_run, tmp_path):
    train = tmp_path / "train.json"
    lines = open(sample_file("tnews", "train"), encoding="utf-8").read().splitlines()
    train.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    args = argv(tiny_model_dir, started_run, 6)
    args[args.index("--train_file") + 1] = str(train)
    run("seq_cls", args)
    assert "the train file changed since it was written" in capsys.readouterr().out


def test_overwrite_starts_over_and_an_explicit_resume_is_allowed(other_models, started_run, tmp_path):
    checkpoint = str(started_run / "checkpoint-3")
    elsewhere = tmp_path / "elsewhere"
    summary = run("seq_cls", argv(other_models["same_shape"], elsewhere, 6, "--resume_from_checkpoint", checkpoint))
    assert summary["resumed_from"] == checkpoint
    summary = run("seq_cls", argv(other_models["same_shape"], started_run, 3, "--overwrite_output_dir"))
    assert summary["resumed_from"] is None
    with open(started_run / RUN_RECORD, encoding="utf-8") as handle:
        assert json.load(handle)["model"] == model_identity(other_models["same_shape"])


def test_an_explicit_resume_of_another_shape_is_one_line(other_models, started_run, tmp_path):
    with pytest.raises(UserError, match="holds a model of another shape"):
        run("seq_cls", argv(other_models["other_shape"], tmp_path / "elsewhere", 6,
                            "--resume_from_checkpoint", str(started_run / "checkpoint-3")))  # fmt: skip


def test_paddle_shape_errors_become_one_line():
    exc = ValueError("(InvalidArgument) Variable Shape not match, Variable [ embedding_0.w_0_moment1_0 ] need "
                     "tensor with shape [100, 32] but load tensor with shape [100, 64]")  # fmt: skip
    error = resume_error(exc, "out/checkpoint-3")
    assert isinstance(error, UserError) and "\n" not in str(error) and "out/checkpoint-3 does not fit" in str(error)
    assert resume_error(ValueError("something else"), "out/checkpoint-3") is None


@pytest.mark.parametrize("damage", ["truncated weights", "garbage optimizer state", "binary trainer state",
                                    "missing weights", "garbage RNG state"])  # fmt: skip
def test_a_damaged_checkpoint_is_one_line_on_resume(capsys, tiny_model_dir, started_run, damage):
    checkpoint = started_run / "checkpoint-3"
    name, content = {
        "truncated weights": ("model_state.pdparams", (checkpoint / "model_state.pdparams").read_bytes()[:1000]),
        "garbage optimizer state": ("optimizer.pdopt", b"garbage\n"),
        "binary trainer state": ("trainer_state.json", b"\xff\xfe\x00"),
        "missing weights": ("model_state.pdparams", None),
        "garbage RNG state": ("rng_state.pth", b"junk\n"),
    }[damage]
    if content is None:
        os.remove(checkpoint / name)
    else:
        (checkpoint / name).write_bytes(content)
    line = refusal(capsys, tiny_model_dir, started_run)
    assert line.startswith(f"error: {checkpoint} is damaged and cannot be resumed (")
    assert "--overwrite_output_dir" in line
    # what a damaged checkpoint does not take away: starting over
    run("seq_cls", argv(tiny_model_dir, started_run, 3, "--overwrite_output_dir"))
    assert os.path.isfile(checkpoint / name)
