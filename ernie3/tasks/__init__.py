"""Task registry: every task the commands accept, mapped to its definition.

Each module of this package defines one task type and lists its tasks in a module-level `TASKS` tuple; the registry
finds them by itself, so a new task type is one new file here (plus its config.yml section). Task modules kept
elsewhere (a project's own, the test suite's test-only types) are named in the ERNIE3_TASK_MODULES environment
variable: module names or .py files, separated by os.pathsep. A module may also define `derived_tasks(tasks)`,
called once every module is read, for tasks built on others (`<name>_long` for every windowable task).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from types import ModuleType
from typing import Optional

from ernie3.errors import UserError
from ernie3.tasks.base import RecordError, Task

#: names extra task modules (module names or .py files, separated by os.pathsep)
TASK_MODULES_ENV = "ERNIE3_TASK_MODULES"


def _extra_module(entry: str) -> ModuleType:
    """A module named in ERNIE3_TASK_MODULES: a .py file (imported under its file name) or an importable module."""
    try:
        if entry.endswith(".py"):
            name = f"ernie3_task_plugin_{os.path.splitext(os.path.basename(entry))[0]}"
            spec = importlib.util.spec_from_file_location(name, entry)
            if spec is None or not os.path.isfile(entry):
                raise FileNotFoundError(f"no such file: {entry}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses (task options) look their module up there
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(entry)
    except Exception as exc:  # an import of user code can fail in any way; say which entry and why, in one line
        raise UserError(f"{TASK_MODULES_ENV}: cannot load task module '{entry}' ({type(exc).__name__}: {exc})") from None


def _discover() -> dict[str, Task]:
    found: dict[str, Task] = {}
    modules = [importlib.import_module(f"{__name__}.{info.name}")
               for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name) if info.name != "base"]  # fmt: skip
    modules += [_extra_module(entry) for entry in os.environ.get(TASK_MODULES_ENV, "").split(os.pathsep) if entry.strip()]

    def add(tasks: tuple, module: ModuleType) -> None:
        for task in tasks:
            if task.name in found:
                raise RuntimeError(f"task name '{task.name}' is defined twice ({module.__name__})")
            found[task.name] = task

    for module in modules:
        add(getattr(module, "TASKS", ()), module)
    for module in modules:
        if hasattr(module, "derived_tasks"):
            add(tuple(module.derived_tasks(dict(found))), module)
    return found


TASKS: dict[str, Task] = _discover()


def get_task(name: Optional[str], task_type: Optional[str] = None) -> Task:
    """The task called `name`; with `task_type`, it must also be of that type (e.g. run_seq_cls.py gets seq_cls)."""
    candidates = {n: t for n, t in TASKS.items() if task_type is None or t.task_type == task_type}
    if not name:
        raise UserError(f"--task_name is required (one of: {', '.join(sorted(candidates))})")
    task = TASKS.get(name.lower())
    if task is None or task.name not in candidates:
        kind = f" {task_type}" if task_type else ""
        raise UserError(f"unknown{kind} task '{name}' (choose one of: {', '.join(sorted(candidates))})")
    return task


def tasks_of_type(task_type: Optional[str]) -> list[Task]:
    return [task for task in TASKS.values() if task_type is None or task.task_type == task_type]


def sample_tasks() -> list[Task]:
    """One task of each task type that ships samples (train and dev), in registry order: what the demo runs and the
    shared tests parametrize over."""
    from ernie3.data import sample_file

    picked: dict[str, Task] = {}
    for task in TASKS.values():
        if task.task_type not in picked and sample_file(task.name, "train") and sample_file(task.name, "dev"):
            picked[task.task_type] = task
    return list(picked.values())


def all_input_flags() -> dict[str, str]:
    """Every raw-input flag some task takes ({flag: help}), for commands that learn the task only from the model."""
    flags: dict[str, str] = {}
    for task in TASKS.values():
        for flag, text in task.input_flags.items():
            flags.setdefault(flag, text)
    return flags


__all__ = ["TASKS", "get_task", "tasks_of_type", "sample_tasks", "all_input_flags", "Task", "RecordError"]
