"""AIME 2024 and 2025 (30 problems each; integer answers 0–999) and ``aime``, both years together."""

from typing import Any

from k15.evalsuite.data import DataSource
from k15.evalsuite.tasks.base import Item, Task
from k15.prompts import MATH_PROMPT

SOURCE_2024 = DataSource("HuggingFaceH4/aime_2024", "train", "aime24/test.jsonl")
SOURCE_2025 = DataSource("MathArena/aime_2025", "train", "aime25/test.jsonl")


def to_item(row: dict[str, Any], _dir: object) -> Item:
    # Local copies have "id" (2024-I-1); HuggingFaceH4/aime_2024 has "id"; MathArena has "problem_idx".
    ident = row.get("id") or f"2025-{row.get('problem_idx')}"
    return Item(str(ident), MATH_PROMPT.format(problem=row["problem"]), {**row, "answer": str(row["answer"])})


AIME24 = Task("aime24", (SOURCE_2024,), to_item, "aime", "AIME 2024 (integer answers)", size=30)
AIME25 = Task("aime25", (SOURCE_2025,), to_item, "aime", "AIME 2025 (integer answers)", size=30)
AIME = Task("aime", (SOURCE_2024, SOURCE_2025), to_item, "aime", "AIME 2024 and 2025 (integer answers)", size=60)
