"""``countdown``: the CPU demo task whose long CoT searches (train/data/countdown.py): reach a target from 3–4
numbers with + - * /, graded by checking the expression (:mod:`k15.grading.countdown`).

The data is generated, not downloaded: ``k15 data demo DATA/countdown --task countdown`` writes ``heldout.jsonl``
(disjoint from the training split), read with ``--data-dir DATA``. The hub path is nominal; nothing is published
under it.
"""

from typing import Any

from k15.evalsuite.data import DataSource
from k15.evalsuite.tasks.base import Item, Task
from k15.prompts import MATH_PROMPT


def to_item(row: dict[str, Any], _dir: object) -> Item:
    return Item(str(row["id"]), MATH_PROMPT.format(problem=row["problem"]), {**row, "answer": str(row["answer"])})


COUNTDOWN = Task(
    name="countdown",
    sources=(DataSource("k15/countdown", "heldout", "countdown/heldout.jsonl"),),
    to_item=to_item,
    grader="countdown",
    description="CPU demo: generated Countdown problems (3–4 numbers, levels 1–4; k15 data demo --task countdown)",
    size=None,
)
