"""JSON Lines and atomic files: how every k15 journal, sample file and summary is read and written. Readers
tolerate a line torn by a killed run; writers replace whole files atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def read_rows(path: str | Path) -> tuple[list[Row], bool]:
    """The JSON-object lines of ``path`` (none if it does not exist) and whether every non-blank line was one (a
    killed writer may tear the last)."""
    path = Path(path)
    if not path.is_file():
        return [], True
    rows, whole = [], True
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            whole = False
    return rows, whole


def append_rows(path: str | Path, rows: Iterable[Row]) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` in one step (synced temp file, then rename), creating the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_rows(path: str | Path, rows: Iterable[Row]) -> Path:
    """Replace ``path`` with ``rows`` atomically."""
    return write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
