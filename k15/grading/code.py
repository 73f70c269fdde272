"""Code answers graded by running their tests in the sandbox (Kimi k1.5 §2.3.5): the evaluation metric of
``humaneval`` and the RL reward of ``task: code`` prompt sets.

A record holds ``test`` (Python that raises on a wrong solution; HumanEval's defines ``check(candidate)``),
optionally ``entry_point`` (the function under test, then ``check(entry_point)`` is called) and ``prompt`` (code the
solution continues: HumanEval's signature and docstring). The code is the response's last fenced block that defines
the entry point (else its last fenced block, else the whole answer); a block that defines the entry point replaces
the prompt's stub, anything else continues the prompt as a function body.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from k15.grading import Grade, answer_text
from k15.sandbox import Sandbox

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGUAGES = {"", "python", "py", "python3"}

_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """One process-wide sandbox with the default limits (callers with their own limits pass a Sandbox)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
        return _default


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def extract_code(answer: str, entry_point: str | None = None) -> str:
    """The code of an answer: the last fenced Python block defining ``entry_point``, else the last fenced block,
    else the answer itself."""
    blocks = [body for lang, body in _FENCE.findall(answer) if lang.lower() in _CODE_LANGUAGES]
    if entry_point:
        defining = [b for b in blocks if _defines(b, entry_point)]
        if defining:
            return defining[-1]
    return blocks[-1] if blocks else answer


def build_program(code: str, record: Mapping[str, Any]) -> str:
    """The program the sandbox runs: prompt + solution + the record's tests (+ ``check(entry_point)``)."""
    entry_point = record.get("entry_point") or None
    prompt = str(record.get("prompt") or "")
    if prompt and entry_point and not _defines(code, entry_point):
        solution = prompt + code  # a function body continuing the prompt's signature
    else:
        solution = f"{prompt}\n\n{code}" if prompt else code
    call = f"\n\ncheck({entry_point})\n" if entry_point else "\n"
    return f"{solution}\n\n{record['test']}{call}"


def grade_code(
    response: str,
    record: Mapping[str, Any],
    *,
    think_opened_by_prompt: bool = False,
    finish_reason: str | None = None,
    sandbox: Sandbox | None = None,
) -> Grade:
    """Right when the response's code passes every test of ``record`` in the sandbox (a truncated response never
    does); ``extracted`` is the code that ran."""
    text, truncated = answer_text(response, think_opened_by_prompt, finish_reason)
    code = extract_code(text, record.get("entry_point") or None)
    if truncated or not code.strip():
        return Grade(code or None, False, truncated, "sandbox", "truncated" if truncated else "no code")
    result = (sandbox or default_sandbox()).run(build_program(code, record))
    return Grade(code, result.passed, truncated, "sandbox", result.reason)
