"""Training data: RL prompt sets (problem + verifiable answer), SFT examples (prompt + response) and preference
pairs (prompt + chosen + rejected), as JSONL.

Any row may carry images: ``images`` (a list) or ``image`` (one, as MathVista rows name it), each a local file (a
relative path is under the JSONL file's directory) or a ``data:image/…;base64,`` URL (:mod:`k15.images`; training
does not fetch http(s) images). Bad rows (not JSON, missing or empty fields — MATH train has two empty answers —, a
missing, remote or unreadable image) are reported with file and line and skipped; a file with no usable row at all
is an error.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class DataFileError(ValueError):
    """A data file that cannot be used at all; the message names it."""


@dataclass(frozen=True)
class Problem:
    """One RL prompt: the text shown to the model, the row the grader reads, its grader and difficulty."""

    id: str
    text: str
    grader: str
    record: dict[str, Any]
    difficulty: float | None = None
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class SFTExample:
    prompt: str
    response: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    images: tuple[str, ...] = ()


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, row or None, problem description) for every non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: not found")
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg})"
                continue
            yield (number, row, "") if isinstance(row, dict) else (number, None, "not a JSON object")


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value)


def _difficulty(row: dict[str, Any]) -> float | None:
    """The row's difficulty: a number in ``difficulty``, else MATH's ``level`` ("Level 3" → 3)."""
    value = row.get("difficulty", row.get("level"))
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := re.search(r"\d+(\.\d+)?", value)):
        return float(match.group())
    return None


def _images(row: dict[str, Any], base_dir: Path) -> tuple[str, ...]:
    """The row's images, resolved (:func:`k15.images.resolve_image`); ValueError says why they are unusable."""
    from k15.images import resolve_image

    if row.get("images") is not None and row.get("image") is not None:
        raise ValueError("both 'images' and 'image' (give one)")
    refs = row.get("images") if row.get("images") is not None else row.get("image")
    if refs is None:
        return ()
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, list) or not all(isinstance(r, str) and r.strip() for r in refs):
        raise ValueError("'images' must be a list of image paths or URLs")
    return tuple(resolve_image(r, base_dir) for r in refs)


def _usable_rows(
    path: str | Path, fields: tuple[str, ...], what: str, check: Callable[[dict[str, Any]], str | None] | None = None
) -> list[tuple[int, dict[str, Any], tuple[str, ...]]]:
    """(line number, row, its resolved images) of every row whose ``fields`` are all non-empty, whose images are
    usable and that ``check`` does not reject (it returns why); bad rows are reported with file and line and
    skipped."""
    rows, skipped, base_dir = [], 0, Path(path).parent
    for number, row, why in _rows(Path(path)):
        images: tuple[str, ...] = ()
        if row is not None:
            missing = [k for k in fields if _text(row, k) is None]
            if missing:
                why = f"missing or empty {', '.join(repr(k) for k in missing)}"
            elif check is not None:
                why = check(row) or ""
            if not why:
                try:
                    images = _images(row, base_dir)
                except ValueError as exc:
                    why = str(exc)
        if why:
            log.warning("%s:%d: skipped: %s", path, number, why)
            skipped += 1
            continue
        assert row is not None
        rows.append((number, row, images))
    if not rows:
        raise DataFileError(f"{path}: no usable {what} ({skipped} rows skipped)")
    if skipped:
        log.warning("%s: %d rows skipped, %d %ss kept", path, skipped, len(rows), what)
    return rows


def load_problems(
    path: str | Path,
    grader: str = "math",
    prompt_template: str | None = "{problem}",
    problem_field: str = "problem",
    answer_field: str = "answer",
) -> list[Problem]:
    """Problems of a JSONL file. A row may name its own ``grader`` (a :data:`k15.grading.GRADERS` key); a code row
    (grader ``code``) carries ``test`` (and optionally ``entry_point`` and a code ``prompt``) instead of an answer.
    ``{problem}`` in the template is its text; template None: the grader's (:func:`k15.prompts.prompt_for`).
    MathVista rows (evalsuite's format) load with ``grader="mathvista"`` and ``problem_field="query"``."""
    from k15.grading import CODE_GRADERS, GRADERS
    from k15.prompts import prompt_for

    def row_grader(row: dict[str, Any]) -> str:
        return str(row.get("grader") or grader)

    def usable(row: dict[str, Any]) -> str | None:
        name = row_grader(row)
        if name not in GRADERS:
            return f"unknown grader {name!r} (graders: {', '.join(sorted(GRADERS))})"
        needed = "test" if name in CODE_GRADERS else answer_field
        return None if _text(row, needed) is not None else f"missing or empty {needed!r}"

    problems = []
    for number, row, images in _usable_rows(path, (problem_field,), "problem", usable):
        name = row_grader(row)
        text = (prompt_template or prompt_for(name)).format(problem=row[problem_field])
        record = dict(row, answer=str(row.get(answer_field, "")))
        ident = str(row.get("id", row.get("unique_id", row.get("pid", number))))
        problems.append(Problem(ident, text, name, record, _difficulty(row), images))
    return problems


def _load_text_rows(path: str | Path, fields: tuple[str, ...], what: str) -> list[tuple[Any, ...]]:
    """The ``fields`` of every usable row, as strings, then its resolved images."""
    return [(*(str(row[k]) for k in fields), images) for _, row, images in _usable_rows(path, fields, what)]


def load_sft_examples(path: str | Path) -> list[SFTExample]:
    """SFT examples: rows with ``prompt`` and ``response`` (the response holds the ``<think>`` reasoning)."""
    return [SFTExample(*row) for row in _load_text_rows(path, ("prompt", "response"), "example")]


def load_preference_pairs(path: str | Path) -> list[PreferencePair]:
    """Preference pairs (DPO): rows with ``prompt``, ``chosen`` and ``rejected`` responses."""
    return [PreferencePair(*row) for row in _load_text_rows(path, ("prompt", "chosen", "rejected"), "pair")]
