"""AIME 2024 and 2025 (30 problems each; integer answers 0–999) and ``aime``, both years together."""

from typing import Any

from k15.evalsuite.data import DataSource
from k15.evalsuite.tasks import Item, Task, register
from k15.prompts import MATH_PROMPT

AIME24 = DataSource("HuggingFaceH4/aime_2024", "train", "aime24/test.jsonl")
AIME25 = DataSource("MathArena/aime_2025", "train", "aime25/test.jsonl")


def to_item(row: dict[str, Any], _dir: object) -> Item:
    # Local copies have "id" (2024-I-1); HuggingFaceH4/aime_2024 has "id"; MathArena has "problem_idx".
    ident = row.get("id") or f"2025-{row.get('problem_idx')}"
    return Item(str(ident), MATH_PROMPT.format(problem=row["problem"]), {**row, "answer": str(row["answer"])})


for name, sources, years in (("aime24", (AIME24,), "2024"), ("aime25", (AIME25,), "2025"),
                             ("aime", (AIME24, AIME25), "2024 and 2025")):  # fmt: skip
    register(Task(name, sources, to_item, "aime", f"AIME {years} (integer answers)", size=30 * len(sources)))
