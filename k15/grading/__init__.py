"""Answer grading: the evaluation metric (evalsuite) and the RL reward (train/).

Only the text after the think block counts (:func:`k15.chat.split_reasoning`); its final answer is the last
``\\boxed{}``, else the last "answer is X" / "Answer: X". Equivalence is math-verify's. A truncated response (think
block never closed, or ``finish_reason == "length"``) is never correct.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

from k15.chat import split_reasoning

# math-verify's time limits (whole seconds, signal.alarm) apply per parse and per comparison; signals work only in
# the main thread, so elsewhere an answer-length cap is the only bound.
PARSE_TIMEOUT_S = 2
VERIFY_TIMEOUT_S = 2
MAX_ANSWER_CHARS = 1000

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_ANCHOR = re.compile(r"\banswer(?:\s*\*\*)?\s*(?:is\b|:)(?:\s*\*\*)?\s*:?", re.IGNORECASE)
_MATH = re.compile(r"\$\$(.+?)(?<!\\)\$\$|\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]")
_LINE = re.compile(r"\s*([^\n]*)")
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_DOLLAR = re.compile(r"(?<!\\)\$")
_PLAIN_INT = re.compile(r"[+-]?\d+(?:\.0*)?")
NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_CONFIG = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@dataclass(frozen=True)
class Grade:
    """The final answer found after the thinking (None if none), whether it is right, whether the output was cut;
    ``verifier``: what decided ("rules", "sandbox", "judge"); ``detail``: why, where that verifier says more."""

    extracted: str | None
    correct: bool
    truncated: bool
    verifier: str = "rules"
    detail: str | None = None


def _brace_content(text: str, start: int) -> str | None:
    """The text inside the ``{...}`` opening at ``start``, with nesting (escaped braces skipped); None if unclosed."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in ``text``."""
    end = len(text)
    for match in reversed(list(_BOX.finditer(text))):
        rest = text[match.end() : end]
        body = rest.lstrip()
        if body.startswith("{"):
            content = _brace_content(rest, len(rest) - len(body))
        else:
            token = re.match(r"\s+([^\s$]+)", rest)
            content = token.group(1) if token else None
        if content is not None:
            return content
        end = match.start()  # a box that encloses this unclosed one cannot close either: scan each char once
    return None


def _value_after_anchor(text: str, start: int) -> str | None:
    """The answer that follows an "answer is" anchor: its math span, else its line up to the sentence end."""
    line = _LINE.match(text, start).group(1).strip()
    math = _MATH.match(line)
    value = next(g for g in math.groups() if g is not None) if math else _SENTENCE_END.split(line, 1)[0]
    value = _DOLLAR.sub("", value.strip().strip("*")).strip().rstrip(".").strip()
    return value or None


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``: the last boxed one, else the last "answer is X" / "Answer: X" form."""
    boxed = last_boxed(text)
    if boxed and boxed.strip():
        return boxed.strip()
    for anchor in reversed(list(_ANCHOR.finditer(text))):
        value = _value_after_anchor(text, anchor.end())
        if value:
            return value
    return None


def answer_text(
    response: str, think_opened_by_prompt: bool = False, finish_reason: str | None = None
) -> tuple[str, bool]:
    """The part of ``response`` after its think block, and whether the response was truncated."""
    split = split_reasoning(response if isinstance(response, str) else "", think_opened_by_prompt)
    return split.answer, not split.thinking_closed or finish_reason == "length"


def _timeout(seconds: int) -> int | None:
    return seconds if threading.current_thread() is threading.main_thread() else None


def parse_answer(answer: str) -> list[Any]:
    """math-verify's parse of one answer (LaTeX or plain); ``[]`` when it cannot be parsed in time."""
    if len(answer) > MAX_ANSWER_CHARS:
        return []
    try:
        return parse(f"\\boxed{{{answer}}}", extraction_config=_CONFIG, parsing_timeout=_timeout(PARSE_TIMEOUT_S))
    except (Exception, TimeoutException):
        return []


@lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> list[Any]:
    return parse_answer(gold)


def is_equivalent(gold: str, answer: str) -> bool:
    """Whether ``answer`` denotes the same mathematical object as ``gold`` (math-verify)."""
    expected, predicted = _parse_gold(gold), parse_answer(answer)
    if not expected or not predicted:
        return False
    try:
        return verify(expected, predicted, timeout_seconds=_timeout(VERIFY_TIMEOUT_S))
    except (Exception, TimeoutException):
        return False


def grade_math(
    response: str, gold: str, *, think_opened_by_prompt: bool = False, finish_reason: str | None = None
) -> Grade:
    """Grade a response to a MATH-style problem against its gold answer (LaTeX)."""
    text, truncated = answer_text(response, think_opened_by_prompt, finish_reason)
    extracted = extract_answer(text)
    correct = extracted is not None and not truncated and is_equivalent(str(gold), extracted)
    return Grade(extracted, correct, truncated)


def integer_value(answer: str) -> int | None:
    """The integer ``answer`` denotes ("025", "25.0", "\\frac{50}{2}"), None if it is not an integer."""
    text = answer.strip().strip("$").strip()
    if len(text) > MAX_ANSWER_CHARS:
        return None
    if _PLAIN_INT.fullmatch(text):
        return int(text.split(".")[0])
    return next((int(value) for value in parse_answer(text) if isinstance(value, sympy.Integer)), None)


def grade_aime(
    response: str, gold: str | int, *, think_opened_by_prompt: bool = False, finish_reason: str | None = None
) -> Grade:
    """Grade a response to an AIME problem: the answer must denote the gold integer (0–999)."""
    text, truncated = answer_text(response, think_opened_by_prompt, finish_reason)
    extracted = extract_answer(text)
    expected = integer_value(str(gold))
    correct = extracted is not None and not truncated and expected is not None and integer_value(extracted) == expected
    return Grade(extracted, correct, truncated)


def gsm8k_gold(answer: str) -> str:
    """The number after the last ``####`` of a GSM8K answer, without thousands commas."""
    return str(answer).rpartition("####")[2].strip().replace(",", "")


def grade_gsm8k(
    response: str, answer: str, *, think_opened_by_prompt: bool = False, finish_reason: str | None = None
) -> Grade:
    """Grade a response to a GSM8K problem; ``answer`` is the dataset's answer (``... #### 72``) or the number.

    An extracted answer with trailing words ("18 dollars") is also compared by its first number.
    """
    text, truncated = answer_text(response, think_opened_by_prompt, finish_reason)
    extracted = extract_answer(text)
    gold = gsm8k_gold(answer)
    number = NUMBER.search(extracted or "")
    correct = (
        extracted is not None
        and not truncated
        and (is_equivalent(gold, extracted) or (number is not None and is_equivalent(gold, number.group())))
    )
    return Grade(extracted, correct, truncated)


Grader = Callable[..., Grade]
"""``grader(response, record, *, think_opened_by_prompt, finish_reason) -> Grade``; ``record`` is the data row."""


def _on_answer(grade_fn: Callable[..., Grade]) -> Grader:
    def grader(response: str, record: Mapping[str, Any], **options: Any) -> Grade:
        return grade_fn(response, record["answer"], **options)

    return grader


def _mathvista(response: str, record: Mapping[str, Any], **options: Any) -> Grade:
    from k15.grading.mathvista import grade_mathvista  # mathvista imports this module

    return grade_mathvista(response, record, **options)


def _countdown(response: str, record: Mapping[str, Any], **options: Any) -> Grade:
    from k15.grading.countdown import grade_countdown  # countdown imports this module

    return grade_countdown(response, record, **options)


def _code(response: str, record: Mapping[str, Any], **options: Any) -> Grade:
    from k15.grading.code import grade_code  # code imports this module

    return grade_code(response, record, **options)


GRADERS: dict[str, Grader] = {
    "math500": _on_answer(grade_math),
    "math": _on_answer(grade_math),
    "aime24": _on_answer(grade_aime),
    "aime25": _on_answer(grade_aime),
    "aime": _on_answer(grade_aime),
    "gsm8k": _on_answer(grade_gsm8k),
    "mathvista": _mathvista,
    "countdown": _countdown,
    "code": _code,
    "humaneval": _code,
}
CODE_GRADERS = frozenset({"code", "humaneval"})
"""Graders that run the response in the sandbox: they take a ``sandbox`` option and may run in threads."""


def get_grader(name: str, what: str = "grader") -> Grader:
    """The grader called ``name``; ValueError naming the known ones if there is none (``what``: how the caller's
    user calls the name, e.g. an evalsuite ``task``)."""
    if name not in GRADERS:
        raise ValueError(f"unknown {what} {name!r}; known {what}s: {', '.join(sorted(GRADERS))}")
    return GRADERS[name]


def grade(
    task: str,
    response: str,
    record: Mapping[str, Any],
    *,
    think_opened_by_prompt: bool = False,
    finish_reason: str | None = None,
    extractor: Callable[[str, Mapping[str, Any]], str | None] | None = None,
    sandbox: Any = None,
) -> Grade:
    """Grade ``response`` to the data row ``record`` of ``task`` (a key of :data:`GRADERS`).

    ``extractor``: an answer extractor replacing the rules (MathVista's optional LLM judge); ``sandbox``: the
    :class:`k15.sandbox.Sandbox` code graders run in (default: one with the default limits)."""
    grader = get_grader(task)
    options: dict[str, Any] = {"think_opened_by_prompt": think_opened_by_prompt, "finish_reason": finish_reason}
    if sandbox is not None and task in CODE_GRADERS:
        options["sandbox"] = sandbox
    if extractor is not None:
        if task != "mathvista":
            raise ValueError(f"an answer extractor applies to mathvista only, not {task!r}")
        options["extractor"] = extractor
    return grader(response, record, **options)
