"""Evaluation tasks, listed by name: each is data + prompt + grader (one small file per task family)."""

from __future__ import annotations

from pathlib import Path

from k15.evalsuite.tasks.aime import AIME, AIME24, AIME25
from k15.evalsuite.tasks.base import Item, Task
from k15.evalsuite.tasks.demo import ARITH, COUNTDOWN
from k15.evalsuite.tasks.humaneval import HUMANEVAL
from k15.evalsuite.tasks.math500 import MATH500
from k15.evalsuite.tasks.mathvista import MATHVISTA

__all__ = ["TASKS", "Item", "Task", "available_tasks", "get_task", "task_data_dir"]

# The tasks, by name: each is data + prompt + grader, defined in its own module.
TASKS: dict[str, Task] = {t.name: t for t in (AIME24, AIME25, AIME, MATH500, MATHVISTA, HUMANEVAL, ARITH, COUNTDOWN)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_data_dir(name: str, data_dir: str | Path | None, task_data_dirs: dict[str, str]) -> Path | None:
    """Where task ``name``'s local data is: its own directory if one is given, else the common one."""
    chosen = task_data_dirs.get(name, data_dir)
    return Path(chosen) if chosen else None


def available_tasks(
    limits: dict[str, int], data_dir: str | Path | None, task_data_dirs: dict[str, str]
) -> dict[str, int]:
    """The tasks of ``limits`` (task → first N problems) whose data loads here; each other one is named with the
    reason, on stdout, and left out."""
    from k15.evalsuite.data import DataError

    kept = {}
    for name, limit in limits.items():
        try:
            get_task(name).items(task_data_dir(name, data_dir, task_data_dirs), limit)
        except DataError as exc:
            print(f"{name} skipped: {exc} (give a data directory with local copies)", flush=True)
            continue
        kept[name] = limit
    return kept
