"""Task registry: every task the commands accept, mapped to its definition.

Each module of this package defines one task type and lists its tasks in a module-level `TASKS` tuple; the registry
finds them by itself, so a new task type is one new file here (plus its config.yml section).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Optional

from ernie3.errors import UserError
from ernie3.tasks.base import RecordError, Task


def _discover() -> dict[str, Task]:
    found: dict[str, Task] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for task in getattr(module, "TASKS", ()):
            if task.name in found:
                raise RuntimeError(f"task name '{task.name}' is defined twice ({module.__name__})")
            found[task.name] = task
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


def all_input_flags() -> dict[str, str]:
    """Every raw-input flag some task takes ({flag: help}), for commands that learn the task only from the model."""
    flags: dict[str, str] = {}
    for task in TASKS.values():
        for flag, text in task.input_flags.items():
            flags.setdefault(flag, text)
    return flags


__all__ = ["TASKS", "get_task", "tasks_of_type", "all_input_flags", "Task", "RecordError"]
