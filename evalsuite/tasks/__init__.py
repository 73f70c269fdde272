"""Evaluation tasks: each is data + prompt + grader, registered by name (one small file per task family)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k15.evalsuite.data import DataSource, load_rows


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
    """A registered task: ``to_item`` turns a data row into an :class:`Item`; ``grader`` names an entry of
    :data:`evalsuite.grading.GRADERS`."""

    name: str
    sources: tuple[DataSource, ...]
    to_item: Callable[[dict[str, Any], Path | None], Item]
    grader: str
    description: str = ""
    multimodal: bool = False
    size: int | None = None
    tags: tuple[str, ...] = field(default=())

    def items(self, data_dir: Path | None = None, limit: int | None = None) -> list[Item]:
        items = [self.to_item(row, data_dir) for source in self.sources for row in load_rows(source, data_dir)]
        return items[:limit] if limit else items


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def available_tasks(
    limits: dict[str, int], data_dir: str | Path | None, task_data_dirs: dict[str, str]
) -> dict[str, int]:
    """The tasks of ``limits`` (task → first N problems) whose data loads here; each other one is named with the
    reason, on stdout, and left out."""
    from k15.evalsuite.data import DataError

    kept = {}
    for name, limit in limits.items():
        try:
            get_task(name).items(Path(task_data_dirs[name]) if name in task_data_dirs else data_dir, limit)
        except DataError as exc:
            print(f"{name} skipped: {exc} (give a data directory with local copies)", flush=True)
            continue
        kept[name] = limit
    return kept


def png_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image (as the hub datasets decode them)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


from k15.evalsuite.tasks import aime, arith, math500, mathvista  # noqa: E402,F401  (registers the tasks)
