"""The library (ernie3/ outside ernie3/cli/) never imports the command-line layer (ernie3/cli/), which imports the
library: read from the source, so that an import hidden in a function body counts too."""
import ast
import os

from conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "ernie3")
CLI = os.path.join(PACKAGE, "cli")


def module_name(path: str) -> str:
    parts = os.path.relpath(path, REPO_ROOT)[: -len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: str) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative imports resolved, and of every string naming a module
    (importlib.import_module("..."))."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = module_name(path) if path.endswith("__init__.py") else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("ernie3.cli"):
            found.append((node.lineno, node.value))
    return found


def library_files() -> list[str]:
    files = []
    for folder, subfolders, names in os.walk(PACKAGE):
        subfolders[:] = [name for name in subfolders if os.path.join(folder, name) != CLI and name != "__pycache__"]
        files += [os.path.join(folder, name) for name in names if name.endswith(".py")]
    return files


def test_the_library_never_imports_the_command_line():
    files = library_files()
    assert os.path.join(PACKAGE, "serving", "app.py") in files and not any(f.startswith(CLI + os.sep) for f in files)
    offending = [f"{os.path.relpath(path, REPO_ROOT)}:{line}: {name}"
                 for path in files for line, name in imported_modules(path)
                 if name == "ernie3.cli" or name.startswith("ernie3.cli.")]  # fmt: skip
    assert not offending, "the library imports the command line:\n" + "\n".join(offending)


def test_the_scan_sees_every_form_of_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import ernie3.cli.serve\nfrom ernie3 import cli\nfrom ernie3.cli.client import main\n"
                        "def f():\n    importlib.import_module('ernie3.cli.soak')\n", encoding="utf-8")  # fmt: skip
    names = [name for _, name in imported_modules(str(probe))]
    assert names == ["ernie3.cli.serve", "ernie3.cli", "ernie3.cli.client.main", "ernie3.cli.soak"]
    app = os.path.join(PACKAGE, "serving", "app.py")
    assert "ernie3.serving.config.ServerSettings" in [name for _, name in imported_modules(app)]
