"""The generated CPU demo tasks (``k15 data demo``): ``arith`` — arithmetic word problems, levels 1–5, integer
answers (train/data/arith.py); ``countdown`` — reach a target from 3–4 numbers with + - * /, levels 1–4, graded
by checking the expression (train/data/countdown.py).

The data is generated, not downloaded: ``k15 data demo DATA/<task> --task <task>`` writes ``heldout.jsonl``
(disjoint from the training split), read with ``--data-dir DATA``. The hub paths are nominal; nothing is
published under them.
"""

from typing import Any

from k15.evalsuite.data import DataSource
from k15.evalsuite.tasks.base import Item, Task
from k15.prompts import MATH_PROMPT


def to_item(row: dict[str, Any], _dir: object) -> Item:
    return Item(str(row["id"]), MATH_PROMPT.format(problem=row["problem"]), {**row, "answer": str(row["answer"])})


ARITH = Task(
    name="arith",
    sources=(DataSource("k15/arith", "heldout", "arith/heldout.jsonl"),),
    to_item=to_item,
    grader="math",
    description="CPU demo: generated arithmetic word problems, levels 1–5 (k15 data demo)",
)
COUNTDOWN = Task(
    name="countdown",
    sources=(DataSource("k15/countdown", "heldout", "countdown/heldout.jsonl"),),
    to_item=to_item,
    grader="countdown",
    description="CPU demo: generated Countdown problems, 3–4 numbers, levels 1–4 (k15 data demo --task countdown)",
)
