"""Grade a JSONL file of responses: each good line gains ``extracted``, ``correct`` and ``truncated``.

Math rows carry their ``answer``; code rows name their problem by ``id`` (a HumanEval ``task_id``, whose prompt and
tests the task supplies) or carry their own ``test`` (and ``entry_point`` / ``prompt``). Code is run in the sandbox,
several programs at once."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from k15.grading import CODE_GRADERS, Grade, get_grader


@dataclass
class Summary:
    graded: int = 0
    correct: int = 0
    truncated: int = 0
    skipped: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.graded if self.graded else 0.0

    def __str__(self) -> str:
        return (
            f"graded {self.graded}, accuracy {self.accuracy:.4f} ({self.correct}/{self.graded}), "
            f"truncated {self.truncated}, skipped {self.skipped}"
        )


def references(task: str) -> dict[str, dict[str, Any]]:
    """The problems of a code task by id (HumanEval's from its package), or {} for a task without them."""
    from k15.evalsuite.tasks import TASKS

    if task not in CODE_GRADERS or task not in TASKS:
        return {}
    return {item.id: item.record for item in TASKS[task].items()}


def _code_row_error(row: dict[str, Any], problems: dict[str, dict[str, Any]]) -> str | None:
    if not isinstance(row.get("response"), str):
        return "missing 'response'" if "response" not in row else "'response' is not a string"
    if isinstance(row.get("test"), str):
        return None
    if "id" not in row:
        return "missing 'id' (the problem's task_id) and no 'test' of its own"
    if str(row["id"]) not in problems:
        return f"unknown problem id {row['id']!r}" + (" (and no 'test' of its own)" if not problems else "")
    return None


def row_error(row: Any, task: str, problems: dict[str, dict[str, Any]] | None = None) -> str | None:
    """Why ``row`` cannot be graded for ``task``, or None (``problems``: a code task's problems by id)."""
    if not isinstance(row, dict):
        return "not a JSON object"
    if task in CODE_GRADERS:
        return _code_row_error(row, problems or {})
    for key in ("response", "answer"):
        if key not in row:
            return f"missing {key!r}"
    if not isinstance(row["response"], str):
        return "'response' is not a string"
    if isinstance(row["answer"], bool) or not isinstance(row["answer"], (str, int, float)):
        return "'answer' is not a string or a number"
    if not isinstance(row.get("finish_reason"), (str, type(None))):
        return "'finish_reason' is not a string"
    if task == "mathvista":
        for key in ("question_type", "answer_type"):
            if not isinstance(row.get(key), str):
                return f"{key!r} is missing or not a string"
        choices = row.get("choices")
        if row["question_type"] == "multi_choice" and not (
            isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices)
        ):
            return "'choices' is not a non-empty list of strings"
        if isinstance(row.get("precision"), bool) or not isinstance(row.get("precision"), (int, float, type(None))):
            return "'precision' is not a number"
    return None


def _parse_line(raw: bytes, task: str, problems: dict[str, dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg})"
    error = row_error(row, task, problems)
    return (None, error) if error else (row, None)


def _good_rows(
    path: Path, task: str, summary: Summary, errors: TextIO
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(row, the record its grader reads) for each good line: a code row gains its problem's prompt and tests."""
    problems = references(task)
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            row, error = _parse_line(raw, task, problems)
            if row is None:
                print(f"{path}:{number}: {error}", file=errors)
                summary.skipped += 1
                continue
            by_id = task in CODE_GRADERS and not isinstance(row.get("test"), str)
            yield row, ({**row, **problems[str(row["id"])]} if by_id else row)


def score_lines(
    path: Path, task: str, summary: Summary, *, think_opened_by_prompt: bool = False, errors: TextIO = sys.stderr
) -> Iterator[dict[str, Any]]:
    """Graded rows of the JSONL file ``path``; bad lines are reported as ``FILE:LINE: reason`` and counted."""
    grader = get_grader(task, "task")

    def graded(job: tuple[dict[str, Any], dict[str, Any]]) -> tuple[dict[str, Any], Grade]:
        row, record = job
        return row, grader(row["response"], record, think_opened_by_prompt=think_opened_by_prompt,
                           finish_reason=row.get("finish_reason"))  # fmt: skip

    def counted(results: Iterator[tuple[dict[str, Any], Grade]]) -> Iterator[dict[str, Any]]:
        for row, grade in results:  # counted here, on one thread, as results arrive in order
            summary.graded += 1
            summary.correct += grade.correct
            summary.truncated += grade.truncated
            detail = {"detail": grade.detail} if grade.detail is not None else {}
            yield {**row, "extracted": grade.extracted, "correct": grade.correct, "truncated": grade.truncated,
                   **detail}  # fmt: skip

    jobs = _good_rows(path, task, summary, errors)
    if task not in CODE_GRADERS:
        yield from counted(map(graded, jobs))
        return
    from k15.grading.code import default_sandbox

    with ThreadPoolExecutor(default_sandbox().workers) as pool:  # the sandbox bounds how many run at once
        yield from counted(pool.map(graded, jobs))


def _some_graded(path: Path, summary: Summary) -> Summary:
    """``summary``, or ValueError when ``path`` had no gradable row (an empty file, or every row bad)."""
    if summary.graded == 0:
        raise ValueError(f"{path}: no gradable row ({summary.skipped} skipped)")
    return summary


def score_file(
    path: Path,
    task: str,
    *,
    out: Path | None = None,
    think_opened_by_prompt: bool = False,
    stdout: TextIO = sys.stdout,
    errors: TextIO = sys.stderr,
) -> Summary:
    """Grade ``path`` for ``task``; write the graded lines to ``out`` (atomically) or ``stdout``."""
    get_grader(task, "task")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    summary = Summary()
    rows = score_lines(path, task, summary, think_opened_by_prompt=think_opened_by_prompt, errors=errors)
    if out is None:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), file=stdout)
        return _some_graded(path, summary)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no such directory: {out.parent}")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as sink:
            for row in rows:
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
        _some_graded(path, summary)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return summary
