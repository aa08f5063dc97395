"""The `ernie3` console command and the package shape: every subcommand answers --help, errors are one line, the
console script is installed, and nothing edits the import path (tests/test_layers.py: the library never imports
the command line)."""
import os
import subprocess

import pytest
from conftest import REPO_ROOT

from ernie3.cli.main import COMMANDS, main


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_answers_help(name, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([name, "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and f"ernie3 {name}" in out


def test_unknown_command_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["trian"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown command 'trian' (choose one of: train, ")


def test_train_runs_any_task_type_and_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--task_name", "nope"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown task 'nope' (choose one of: ") and "msra_ner" in err and "tnews" in err


def test_console_script_is_installed():
    """`make install` puts the package into the venv (editable), so `ernie3` and the deploy scripts find it."""
    import shutil
    import sys

    command = os.path.join(os.path.dirname(sys.executable), "ernie3")
    if not os.path.exists(command):
        command = shutil.which("ernie3")
    assert command, "the ernie3 console command is not installed: run make install"
    done = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "commands:" in done.stdout


def tracked_python_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [os.path.join(REPO_ROOT, path) for path in listed.stdout.split()]


def test_nothing_edits_the_import_path():
    needle = "sys." + "path"  # spelled apart so that this file does not match itself
    offenders = []
    for path in tracked_python_files():
        with open(path, encoding="utf-8") as handle:
            if needle in handle.read():
                offenders.append(os.path.relpath(path, REPO_ROOT))
    assert not offenders, f"{needle} in: {offenders} (the package is installed; import it)"


@pytest.mark.parametrize("flags, message", [
    (["--hidden_size", "0"], "--hidden_size must be a positive integer, got 0"),
    (["--hidden_size", "30", "--num_attention_heads", "4"], "--hidden_size 30 must be a multiple of --num_attention_heads 4"),
    (["--vocab_file", "missing.txt"], "--vocab_file: file not found: missing.txt"),
])  # fmt: skip
def test_tiny_model_flags_are_checked(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as stopped:
        main(["tiny-model", "--output_dir", str(tmp_path / "m"), *flags])
    assert stopped.value.code == 2 and capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 8, "not UTF-8 text"),
    ("a\nb\n".encode(), "is not an ERNIE vocabulary (one token per line): it lacks [PAD], [CLS], [SEP], [MASK], [UNK]"),
    (b"", "it lacks [PAD]"),
])  # fmt: skip
def test_tiny_model_refuses_a_vocab_file_the_tokenizer_cannot_read(tmp_path, capsys, content, message):
    vocab = tmp_path / "vocab.bin"
    vocab.write_bytes(content)
    with pytest.raises(SystemExit) as stopped:
        main(["tiny-model", "--output_dir", str(tmp_path / "m"), "--vocab_file", str(vocab)])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and err.startswith("error: ") and message in err and str(vocab) in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "m").exists()


def test_the_old_python_m_ernie3_modeling_says_where_the_command_moved(tmp_path):
    import sys

    done = subprocess.run([sys.executable, "-m", "ernie3.modeling", "--output_dir", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: `python -m ernie3.modeling` is no longer a command: run `ernie3 tiny-model" in done.stderr
    assert not (tmp_path / "m").exists()


def test_tiny_model_refuses_a_file_or_a_folder_with_other_files(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for output_dir, message in ((a_file / "m", "is not a directory"), (tmp_path, "is not empty")):
        with pytest.raises(SystemExit):
            main(["tiny-model", "--output_dir", str(output_dir)])
        assert message in capsys.readouterr().err
    assert a_file.read_text() == "x"
