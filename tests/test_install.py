"""The install tells the truth: the Python versions README and pyproject claim are the ones the pins allow, GPU users
get paddlepaddle-gpu from PaddlePaddle's index, and `make clean` removes what the targets write (never the venv)."""
import os
import re
import subprocess
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conftest import REPO_ROOT


def pins() -> dict[str, str]:
    with open(os.path.join(REPO_ROOT, "requirements.txt"), encoding="utf-8") as handle:
        found = re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s#]+)", handle.read(), flags=re.MULTILINE)
    return dict(found)


def claimed_minimum_python() -> Version:
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), encoding="utf-8") as handle:
        return Version(re.search(r'requires-python = ">=([0-9.]+)"', handle.read()).group(1))


def test_every_pin_accepts_the_python_versions_we_claim():
    minimum = claimed_minimum_python()
    refusing = []
    for name, version in pins().items():
        try:
            installed = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue  # e.g. paddlepaddle-gpu's CPU twin; what is installed is checked
        assert installed["Version"] == version, f"{name}: {installed['Version']} installed, {version} pinned"
        required = installed.get("Requires-Python")
        if required and minimum not in SpecifierSet(required):
            refusing.append(f"{name}=={version} needs Python {required}")
    assert not refusing, f"pyproject/README claim Python >= {minimum}, but " + "; ".join(refusing)
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        assert f"Python {minimum.major}.{minimum.minor} or newer" in handle.read()


def make_dry_run(*arguments: str) -> str:
    return subprocess.run(["make", "-n", "-W", "requirements.txt", *arguments], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


def test_gpu_install_takes_paddlepaddle_gpu_from_paddles_index():
    commands = make_dry_run("install", "GPU=cu118")
    assert "sed 's/^paddlepaddle==/paddlepaddle-gpu==/' requirements.txt" in commands
    assert "--extra-index-url https://www.paddlepaddle.org.cn/packages/stable/cu118/" in commands
    cpu_commands = make_dry_run("install")
    assert "paddlepaddle-gpu" not in cpu_commands and "-r requirements.txt" in cpu_commands


def test_make_clean_removes_every_default_output_and_keeps_the_venv():
    commands = subprocess.run(["make", "-n", "clean"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    removed = commands.split()
    for output in ("demo_output", "output", "bench_output", "soak_output"):
        assert output in removed
    assert ".venv" not in removed
