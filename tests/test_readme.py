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
