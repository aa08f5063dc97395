"""README's offline snippets run as written, in order, on a fresh checkout: each block marked
`<!-- readme-test: offline -->` runs in bash from a scratch copy of the repository's entry points."""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

MARKER = "<!-- readme-test: offline -->"
# what the snippets run, linked into the scratch dir so their outputs (output/...) stay out of the repository
ENTRY_POINTS = ("ernie3", "deploy", "config.yml", "run_seq_cls.py", "run_token_cls.py", "run_qa.py",
                "compress_seq_cls.py", "compress_token_cls.py", "compress_qa.py", "infer.py")  # fmt: skip
# library chatter that must stay off stdout (reports and results only)
CHATTER = re.compile(r"\[\s*(INFO|WARNING|DEBUG)\s*\]|---\s+quantized|\[Paddle2ONNX\]|Polygraphy|I\d{4} ")


def offline_snippets() -> list[str]:
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    return re.findall(re.escape(MARKER) + r"\s*```bash\n(.*?)```", readme, flags=re.DOTALL)


def test_readme_has_offline_snippets():
    assert len(offline_snippets()) >= 3


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    directory = tmp_path_factory.mktemp("readme")
    for name in ENTRY_POINTS:
        os.symlink(os.path.join(REPO_ROOT, name), directory / name)
    return directory


@pytest.mark.parametrize("index", range(len(offline_snippets())))
def test_offline_snippet_runs_as_written(scratch, index):
    """Snippets depend on earlier ones (the model, the fine-tuned output), as a reader runs them: in order."""
    venv_bin = os.path.dirname(sys.executable)  # the console command `ernie3` sits beside the venv's python
    script = offline_snippets()[index].replace(".venv/bin/python", sys.executable).replace(".venv/bin/ernie3", venv_bin + "/ernie3")
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    environment.pop("ERNIE3_VERBOSE", None)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=scratch, capture_output=True, text=True,
                          env=environment, timeout=900)  # fmt: skip
    assert done.returncode == 0, f"README snippet {index + 1} failed:\n{script}\n--- stderr ---\n{done.stderr[-3000:]}"
    chatter = [line for line in done.stdout.splitlines() if CHATTER.search(line)]
    assert not chatter, f"library chatter on stdout of README snippet {index + 1}: {chatter[:5]}"


# -- the module paths and flags the READMEs name are the code's --------------------------------------------------

READMES = ("README.md", os.path.join("deploy", "serving", "README.md"))
#: where a command's flags start: the entry points whose flags are checked (others, e.g. scripts/, are not)
SCRIPTS = ("infer.py", "run_seq_cls.py", "run_token_cls.py", "run_qa.py", "compress_seq_cls.py", "compress_token_cls.py",
           "compress_qa.py", "deploy/python/infer_cpu.py", "deploy/python/infer_gpu.py",
           "deploy/paddle2onnx/export_onnx.py", "deploy/serving/serve.py", "deploy/serving/serve_ray.py",
           "deploy/serving/client_seq_cls.py", "deploy/serving/client_token_cls.py", "deploy/serving/client_qa.py",
           "deploy/serving/load_test.py")  # fmt: skip
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


def ernie3_jobs() -> list:
    from ernie3.cli.main import COMMANDS

    return [[name] for name in COMMANDS]


JOBS = ernie3_jobs()


def readme_text(name: str) -> str:
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as handle:
        return handle.read()


def named_module_paths() -> list[tuple[str, str]]:
    """(README, path) of every `ernie3/...` path written in the READMEs."""
    found = []
    for name in READMES:
        for path in re.findall(r"(?<![\w./-])ernie3/[\w./-]*", readme_text(name)):
            found.append((name, path.rstrip(".")))
    return found


def test_every_module_path_the_readmes_name_exists():
    assert len(named_module_paths()) > 20
    missing = sorted({f"{name}: {path}" for name, path in named_module_paths()
                      if not os.path.exists(os.path.join(REPO_ROOT, path))})  # fmt: skip
    assert not missing, f"README names paths that do not exist: {missing}"


def readme_commands() -> list[tuple[str, str, list[str]]]:
    """(README, entry point, argument tokens) of every command of a known entry point in the READMEs: each line of
    their bash blocks, and inline code that starts a command (`ernie3 bench --rounds 2 ...`)."""
    commands = []
    for name in READMES:
        text = readme_text(name)
        lines = []
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
            lines += [re.split(r"(?:^|\s)#", line, maxsplit=1)[0] for line in block.replace("\\\n", " ").splitlines()]
        prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
        lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
        for line in lines:
            tokens = line.split()
            for position, token in enumerate(tokens):
                if (token == "ernie3" or token.endswith("/ernie3")) and tokens[position + 1 : position + 2] in JOBS:
                    commands.append((name, f"ernie3 {tokens[position + 1]}", tokens[position + 2 :]))
                    break
                if token in SCRIPTS:
                    commands.append((name, token, tokens[position + 1 :]))
                    break
    return commands


def help_flags(entry: str, task_name=None) -> set:
    """The flags an entry point's --help lists (with --task_name, the task's own flags too)."""
    import contextlib
    import io
    import runpy

    argv = (["--task_name", task_name] if task_name else []) + ["--help"]
    out, saved = io.StringIO(), list(sys.argv)
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            if entry.startswith("ernie3 "):
                from ernie3.cli.main import main

                main([entry.split()[1], *argv])
            else:
                sys.argv = [entry, *argv]
                runpy.run_path(os.path.join(REPO_ROOT, entry), run_name="__main__")
    finally:
        sys.argv = saved
    return set(FLAG.findall(out.getvalue()))


def accepted_flags(entry: str, task_name) -> set:
    if entry != "ernie3 pipeline":
        return help_flags(entry, task_name)
    # the pipeline passes flags on to its stages by name, and Trainer flags with a compress_ prefix to compression
    training = help_flags("ernie3 train", task_name)
    return (help_flags(entry, task_name) | training | help_flags("ernie3 compress", task_name)
            | {"--compress_" + flag[2:] for flag in training})  # fmt: skip


def test_every_flag_in_the_readmes_commands_is_accepted_by_its_entry_point():
    commands = readme_commands()
    entries = {entry for _, entry, _ in commands}
    for expected in ("infer.py", "run_seq_cls.py", "compress_seq_cls.py", "ernie3 bench", "ernie3 pipeline"):
        assert expected in entries, f"no README command of {expected} found"
    cache, unknown = {}, []
    for readme, entry, tokens in commands:
        task_name = tokens[tokens.index("--task_name") + 1] if "--task_name" in tokens[:-1] else None
        key = (entry, task_name)
        if key not in cache:
            cache[key] = accepted_flags(entry, task_name)
        unknown += [f"{readme}: {entry} {flag}" for flag in FLAG.findall(" ".join(tokens)) if flag not in cache[key]]
    assert not unknown, f"README commands use flags their entry point does not accept: {sorted(set(unknown))}"


def test_the_serving_readme_lists_the_backends_and_precisions_of_the_code():
    from ernie3.backends import BACKENDS, PRECISIONS

    text = " ".join(readme_text(READMES[1]).split())
    backends = re.search(r"`backend` \(((?:`\w+`, )*`\w+`)", text)
    precisions = re.search(r"`precision` \(((?:`\w+`, )*`\w+`)", text)
    assert backends and precisions, "the serving README's option list moved: update this test"
    assert re.findall(r"`(\w+)`", backends.group(1)) == list(BACKENDS)
    assert re.findall(r"`(\w+)`", precisions.group(1)) == ["auto", *PRECISIONS]


@pytest.mark.parametrize("heading, entry", [("## Compression", "compress_seq_cls.py"), ("## The whole job", "ernie3 pipeline")])
def test_the_flag_lists_of_the_compress_and_pipeline_sections_are_accepted(heading, entry):
    """Their prose lists every flag of the command (`--strategy`, `--width_mult_list`, ...): each must be one."""
    [section] = [s for s in re.split(r"\n(?=## )", readme_text("README.md")) if s.startswith(heading)]
    prose = re.sub(r"```.*?```", "", section, flags=re.DOTALL)
    # `--nncf_*`: a family of flags, named by its prefix
    named = {flag for flag in FLAG.findall(" ".join(re.findall(r"`([^`]+)`", prose))) if not flag.endswith("_")}
    assert len(named) > 20
    assert not named - accepted_flags(entry, "tnews"), f"{heading} names flags {entry} does not accept"
