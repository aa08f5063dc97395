"""A quiet, decisive terminal (issue 19, item 3): a run's stdout is its summary, the libraries' INFO/DEBUG lines
go to OUTPUT/ernie3.log, --verbose / --log_level bring them back, errors come first, repeated warnings once,
and the soak says how far it is."""
import logging
import sys

import pytest

from conftest import sample_file
from ernie3.errors import run_cli
from ernie3.layout import RUN_LOG_FILE

LIBRARY_CHATTER = ("[    INFO]", "[   DEBUG]", "Configuration Arguments", "Effective settings")


@pytest.fixture
def terminal(capfd, monkeypatch):
    """capfd, with paddlenlp's stderr handler writing to the captured stderr (it keeps the stream it was created
    with: pytest's own capture, which capfd would not see)."""
    from paddlenlp.utils.log import logger

    class Terminal:
        def readouterr(self):
            return capfd.readouterr()

        def __enter__(self):  # inside the test, where sys.stderr is capfd's
            import paddle.static.io  # noqa: F401  (its logger and handler exist)

            for handler in [logger.handler, *logging.getLogger("paddle.static.io").handlers]:
                if type(handler) is logging.StreamHandler:
                    monkeypatch.setattr(handler, "stream", sys.stderr)
            return self

        def __exit__(self, *exc):
            monkeypatch.undo()

    return Terminal()


def train_argv(model_dir, output_dir, *extra):
    return ["--task_name", "tnews", "--model_name_or_path", model_dir, "--output_dir", str(output_dir),
            "--train_file", sample_file("tnews", "train"), "--dev_file", sample_file("tnews", "dev"),
            "--do_train", "--do_eval", "--max_steps", "4", "--evaluation_strategy", "steps", "--save_strategy", "steps",
            "--eval_steps", "2",
            "--save_steps", "2", "--per_device_train_batch_size", "16", *extra]  # fmt: skip


def test_stdout_is_the_summary_and_the_library_lines_are_in_the_log(tiny_model_dir, tmp_path, terminal):
    from ernie3.summary import train_main

    output_dir = tmp_path / "out"
    with terminal:
        result = train_main("seq_cls", train_argv(tiny_model_dir, output_dir, "--log_level", "warning"))
    out, err = terminal.readouterr()
    lines = out.strip().splitlines()
    metric = result["eval"]["eval_accuracy"]
    best = result["best_checkpoint"]
    assert lines[0] == f"best dev accuracy {metric:.4f} at {best} → {output_dir / 'best'}"
    assert best.startswith("checkpoint-") and (output_dir / best).is_dir()
    assert any(line.startswith("next: python compress_seq_cls.py ") and str(output_dir / "best") in line
               for line in lines)  # fmt: skip
    assert f"log (library INFO/DEBUG lines) → {output_dir / RUN_LOG_FILE}" in lines
    assert len(lines) <= 6
    for chatter in LIBRARY_CHATTER:
        assert chatter not in out and chatter not in err
    log = (output_dir / RUN_LOG_FILE).read_text(encoding="utf-8")
    assert "Effective settings" in log and "Configuration Arguments" in log  # the table and paddlenlp's DEBUG dump
    assert "***** Running training *****" in log


def test_verbose_brings_the_library_lines_back(tiny_model_dir, tmp_path, terminal):
    from ernie3.summary import train_main

    with terminal:
        train_main("seq_cls", train_argv(tiny_model_dir, tmp_path / "out", "--verbose"))
    out, err = terminal.readouterr()
    assert "Effective settings" in err and "[    INFO]" in err and "***** Running training *****" in err
    assert "Effective settings" in (tmp_path / "out" / RUN_LOG_FILE).read_text(encoding="utf-8")
    # the next quiet run in the same process is quiet again
    with terminal:
        train_main("seq_cls", train_argv(tiny_model_dir, tmp_path / "quiet"))
    out, err = terminal.readouterr()
    assert "[    INFO]" not in err and "Effective settings" not in err and out.startswith("best dev accuracy")


def test_log_level_info_is_accepted_and_a_bad_level_is_one_line(tiny_model_dir, tmp_path, capfd):
    from ernie3.train import run

    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: run("seq_cls", train_argv(tiny_model_dir, tmp_path / "bad", "--log_level", "loud")))
    out, err = capfd.readouterr()
    assert exit_info.value.code == 2 and not out
    assert err.strip().splitlines() == ["error: --log_level must be one of debug, info, warning, error, got 'loud'"]
    assert not (tmp_path / "bad").exists()


def test_an_offline_hub_name_error_is_the_first_thing_printed(tmp_path, terminal):
    from ernie3.train import run

    argv = train_argv("ernie-3.0-no-such-model-zh", tmp_path / "out")
    with terminal, pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: run("seq_cls", argv))
    out, err = terminal.readouterr()
    assert exit_info.value.code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not load the tokenizer 'ernie-3.0-no-such-model-zh'")
    assert not (tmp_path / "out").exists()  # a refused run writes nothing, not even its log


def test_a_repeated_library_warning_is_shown_once_and_logged_every_time(tmp_path, terminal):
    import paddle.static.io as paddle_io

    from ernie3.logs import attach_run_log, begin_run_log

    begin_run_log()
    path = attach_run_log(str(tmp_path / RUN_LOG_FILE), ["test"])
    with terminal:
        for n in range(3):  # as paddle logs it per PTQ calibration, with the model path of the moment
            paddle_io._logger.warning("The old way to load inference model is deprecated. Please specify "
                                      f"path_prefix. model path: m{n}/int8.pdmodel")  # fmt: skip
        paddle_io._logger.info("an INFO line of paddle")
        paddle_io._logger.warning("Another warning. Shown too.")
    _, err = terminal.readouterr()
    assert err.count("The old way to load inference model is deprecated") == 1 and "Another warning" in err
    assert "an INFO line of paddle" not in err
    log = open(path, encoding="utf-8").read()
    assert log.count("The old way to load inference model is deprecated") == 3 and "an INFO line of paddle" in log
    begin_run_log()  # detach: later tests' runs do not write here


def test_soak_shows_progress(tiny_exports, tmp_path, capsys):
    from ernie3.cli import soak

    soak.main(["--model_path", tiny_exports["seq_cls"], "--minutes", "0.05", "--interval", "0.5",
               "--progress_every", "1", "--batch_size", "4", "--max_text_chars", "32", "--output_dir", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if line.startswith("soak: ")]
    assert len(progress) >= 2, err
    assert "of 0.1 min" in progress[-1] and " texts (" in progress[-1] and "RSS" in progress[-1]
