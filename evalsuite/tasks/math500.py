"""MATH-500: the 500-problem test subset of MATH (Lightman et al., "Let's Verify Step by Step")."""

from k15.evalsuite.data import DataSource
from k15.evalsuite.tasks.base import Item, Task
from k15.prompts import MATH_PROMPT

MATH500 = Task(
    name="math500",
    sources=(DataSource("HuggingFaceH4/MATH-500", "test", "math500/test.jsonl"),),
    to_item=lambda row, _dir: Item(str(row["unique_id"]), MATH_PROMPT.format(problem=row["problem"]), row),
    grader="math500",
    description="MATH-500 (500 competition problems, LaTeX answers, math-verify)",
    size=500,
)
