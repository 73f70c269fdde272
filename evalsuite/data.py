"""Task data: Hugging Face datasets by default, or local JSONL copies read through the same loader.

``--data-dir DIR`` (or ``K15_DATA_DIR``) switches every task to ``DIR/<task>/<split>.jsonl``; both paths go through
``datasets.load_dataset``, so a local copy behaves exactly like the hub dataset it mirrors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "K15_DATA_DIR"


class DataError(ValueError):
    """Task data that cannot be loaded; the message names the file or dataset."""


@dataclass(frozen=True)
class DataSource:
    """Where a task's rows come from: a hub dataset and the path of its local JSONL copy."""

    hub_path: str
    split: str
    local_file: str
    hub_config: str | None = None


def data_dir(explicit: str | Path | None = None) -> Path | None:
    value = explicit or os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def load_rows(source: DataSource, directory: Path | None = None) -> list[dict[str, Any]]:
    """All rows of ``source``: from ``directory`` when given (or set in the environment), else the hub."""
    import datasets

    directory = data_dir(directory)
    try:
        if directory is not None:
            path = directory / source.local_file
            if not path.is_file():
                raise DataError(f"{path}: not found (a local copy of {source.hub_path} is expected there)")
            rows = datasets.load_dataset("json", data_files=str(path), split="train")
        else:
            rows = datasets.load_dataset(source.hub_path, source.hub_config, split=source.split)
    except DataError:
        raise
    except Exception as exc:  # the hub unreachable, a malformed file: say which data and why
        where = directory / source.local_file if directory else f"{source.hub_path} ({source.split})"
        raise DataError(f"{where}: cannot load: {type(exc).__name__}: {exc}") from None
    return [dict(row) for row in rows]
