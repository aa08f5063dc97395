"""Task registry: every task name the scripts accept, mapped to its definition."""
from __future__ import annotations

from typing import Optional

from ernie3.errors import UserError
from ernie3.tasks.base import RecordError, Task
from ernie3.tasks.qa import QA_TASKS, QATask
from ernie3.tasks.seq_cls import CLUE_TASKS, SeqClsTask
from ernie3.tasks.token_cls import TOKEN_CLS_TASKS, TokenClsTask

TASKS: dict[str, Task] = {task.name: task for task in (*CLUE_TASKS, *TOKEN_CLS_TASKS, *QA_TASKS)}


def get_task(name: Optional[str], task_type: Optional[str] = None) -> Task:
    """The task called `name`; with `task_type`, it must also be of that type (e.g. run_seq_cls.py gets seq_cls)."""
    candidates = {n: t for n, t in TASKS.items() if task_type is None or t.task_type == task_type}
    if not name:
        raise UserError(f"--task_name is required (one of: {', '.join(candidates)})")
    task = TASKS.get(name.lower())
    if task is None or task.name not in candidates:
        kind = f" {task_type}" if task_type else ""
        raise UserError(f"unknown{kind} task '{name}' (choose one of: {', '.join(candidates)})")
    return task


__all__ = ["TASKS", "get_task", "Task", "RecordError", "SeqClsTask", "TokenClsTask", "QATask"]
