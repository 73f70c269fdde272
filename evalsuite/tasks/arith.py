"""``arith``: the CPU demo task (train/data/arith.py), arithmetic word problems in levels 1–5 with integer answers.

The data is generated, not downloaded: ``k15 data demo DATA/arith`` writes ``heldout.jsonl`` (disjoint from the
training split), read with ``--data-dir DATA``. The hub path is nominal; nothing is published under it.
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
    size=None,
)
