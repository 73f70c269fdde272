"""Checkpoint metadata: the ``k15.json`` written beside every Hugging Face checkpoint k15 produces, and whether a
checkpoint is a vision-language model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

METADATA_FILE = "k15.json"


class Kind(StrEnum):
    base = "base"
    long_cot = "long-cot"
    long2short = "long2short"


THINKING_KINDS = frozenset({Kind.long_cot, Kind.long2short})  # checkpoints that think in <think>…</think> first


class CheckpointInfo(BaseModel):
    """What a checkpoint is: its kind, where it came from, and how it was made."""

    kind: Kind
    name: str
    base_model: str | None = None
    method: str | None = None
    iteration: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    extra: dict[str, Any] = Field(default_factory=dict)


def write_info(path: Path, info: CheckpointInfo) -> None:
    (Path(path) / METADATA_FILE).write_text(info.model_dump_json(indent=2) + "\n")


def read_info(path: Path) -> CheckpointInfo | None:
    """The checkpoint's ``k15.json``, or None when the directory has none (a plain HF checkpoint)."""
    file = Path(path) / METADATA_FILE
    if not file.is_file():
        return None
    try:
        return CheckpointInfo.model_validate(json.loads(file.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"{file}: not a valid k15 checkpoint description: {exc}") from None


def thinks(info: CheckpointInfo | None) -> bool:
    """Whether a checkpoint of this ``k15.json`` (None: a plain HF checkpoint) thinks in a block first."""
    return info is not None and info.kind in THINKING_KINDS


def is_checkpoint(path: Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def is_multimodal(path: str | Path) -> bool:
    """A checkpoint takes images when its config has a vision tower."""
    config = json.loads((Path(path) / "config.json").read_text())
    return "vision_config" in config
