"""What a task is: data sources, a row → :class:`Item` function and the grader that scores it."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k15.evalsuite.data import DataSource, load_rows
from k15.grading import GRADERS


@dataclass(frozen=True)
class Item:
    """One problem: its id, the prompt text, an optional image (PNG bytes) and the row the grader reads."""

    id: str
    text: str
    record: dict[str, Any]
    image: bytes | None = None

    def messages(self, send_image: bool) -> list[dict[str, Any]]:
        if not (send_image and self.image):
            return [{"role": "user", "content": self.text}]
        url = "data:image/png;base64," + base64.b64encode(self.image).decode()
        parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": self.text}]
        return [{"role": "user", "content": parts}]


@dataclass(frozen=True)
class Task:
    """A task: ``to_item`` turns a data row into an :class:`Item`; ``grader`` is the :data:`k15.grading.GRADERS`
    entry that scores it (checked when the task is defined)."""

    name: str
    sources: tuple[DataSource, ...]
    to_item: Callable[[dict[str, Any], Path | None], Item]
    grader: str
    description: str = ""
    multimodal: bool = False
    size: int | None = None
    tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.grader not in GRADERS:
            raise ValueError(f"task {self.name!r}: unknown grader {self.grader!r}")

    def items(self, data_dir: Path | None = None, limit: int | None = None) -> list[Item]:
        items = [self.to_item(row, data_dir) for source in self.sources for row in load_rows(source, data_dir)]
        return items[:limit] if limit else items


def png_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image (as the hub datasets decode them)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()
