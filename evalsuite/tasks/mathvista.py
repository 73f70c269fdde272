"""MathVista testmini (1000 visual math problems) with the official prompt (``query``) and answer rules."""

from pathlib import Path
from typing import Any

from k15.evalsuite.data import DataSource
from k15.evalsuite.tasks.base import Item, Task, png_bytes


def to_item(row: dict[str, Any], data_dir: Path | None) -> Item:
    """The hub rows carry ``decoded_image``; a local copy may keep the image file beside its JSONL."""
    image = png_bytes(row["decoded_image"]) if row.get("decoded_image") is not None else None
    if image is None and data_dir is not None and row.get("image"):
        path = Path(data_dir) / "mathvista" / row["image"]
        image = path.read_bytes() if path.is_file() else None
    keys = ("pid", "query", "answer", "question_type", "answer_type", "choices", "precision", "unit")
    record = {k: row.get(k) for k in keys}
    return Item(str(row["pid"]), row["query"], record, image)


MATHVISTA = Task(
    name="mathvista",
    sources=(DataSource("AI4Math/MathVista", "testmini", "mathvista/testmini.jsonl"),),
    to_item=to_item,
    grader="mathvista",
    description="MathVista testmini (multi-choice, integer, float, list answers; images)",
    multimodal=True,
    size=1000,
)
