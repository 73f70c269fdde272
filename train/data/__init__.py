"""Training data: prompt-set and trace formats, the demo tasks, teacher warm-up traces and curation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

# The generated demo tasks, by name: ``make_splits(out_dir, train, heldout, sft, seed, levels)`` writes
# ``train.jsonl``, ``heldout.jsonl`` and ``sft.jsonl`` (see each module).
DEMO_TASKS = {"arith": "k15.train.data.arith", "countdown": "k15.train.data.countdown"}


def _module(task: str) -> ModuleType:
    import importlib

    if task not in DEMO_TASKS:
        raise ValueError(f"unknown demo task {task!r}; known: {', '.join(DEMO_TASKS)}")
    return importlib.import_module(DEMO_TASKS[task])


def demo_splits(task: str) -> Callable[..., dict[str, Path]]:
    """The ``make_splits`` of demo task ``task``; ValueError naming the known ones."""
    return _module(task).make_splits


def demo_levels(task: str) -> tuple[int, ...]:
    """The difficulty levels of demo task ``task``."""
    return tuple(_module(task).LEVELS)
