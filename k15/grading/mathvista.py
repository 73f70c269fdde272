"""MathVista scoring: extract the answer by rules (or an LLM judge), then the official normalisation and equality.

The normalisation and the string equality follow lupantech/MathVista ``evaluation/calculate_score.py``
(``normalize_extracted_answer``, ``safe_equal``). The official GPT-4 extraction step is replaced by rules; pass a
:class:`JudgeExtractor` to use an LLM instead. An answer with nothing to extract is wrong (the official scorer would
map an empty extraction to the nearest, i.e. shortest, choice).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import sympy

from k15.grading import NUMBER, Grade, answer_text, extract_answer, parse_answer

Extractor = Callable[[str, Mapping[str, Any]], str | None]
"""``extractor(answer_text, record) -> extraction``; the rule-based one is :func:`extract_mathvista`."""

_LETTER_START = re.compile(r"\(([A-Za-z])\)|([A-Z])(?:[.:)]|$)|([a-z])$")  # "(B) ...", "B. ...", "B", "b"
_LETTER_PAREN = re.compile(r"\(([a-zA-Z])\)")
_LIST = re.compile(r"\[[^\[\]]*\]")
_PERCENT = re.compile(r"\s*\\?%$")
_NEAREST_CHARS = 500  # the tail of a line kept for the edit-distance fallback, which is quadratic

_DEMO_PROMPT = """\
Read the examples, then extract the final answer from the last model response, in the form its hint asks for.

Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.
Question: How many cars are parked in the lot?

Model response: I count four cars in the front row and three behind them, so there are 7 cars.

Extracted answer: 7

Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final \
value, e.g., 1.23, 1.34, 1.45, at the end.
Question: What is the total price of a pen and a notebook? (Unit: $)

Model response: A pen costs $1.20 and a notebook $2.35, which comes to $3.55 altogether.

Extracted answer: 3.55

Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], \
[1.2, 1.3, 1.4], at the end.
Question: In which two years did sales peak?

Model response: Sales were highest in 2011 and again in 2015.

Extracted answer: [2011, 2015]

Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.
Question: What is the measure of angle ABC?
Choices:
(A) 30°
(B) 45°
(C) 60°
(D) 90°

Model response: The triangle is equilateral, so angle ABC is 60°, option (C).

Extracted answer: C"""


def option_letters(choices: list[str]) -> list[str]:
    return [chr(ord("A") + i) for i in range(len(choices))]


def _clean(text: str) -> str:
    return text.strip().strip("*$").rstrip(".").strip()


def _last_named_choice(text: str, choices: list[str]) -> str | None:
    """The choice whose text occurs last in ``text`` (case-insensitive; the longest on a tie)."""
    found = []
    for choice in choices:
        spans = [m.end() for m in re.finditer(rf"(?<!\w){re.escape(choice)}(?!\w)", text, re.IGNORECASE)]
        if choice.strip() and spans:
            found.append((spans[-1], len(choice), choice))
    return max(found)[2] if found else None


def _extract_choice(text: str, choices: list[str]) -> str | None:
    """The option letter ``text`` names (by letter or by choice text), else its last line for the nearest-choice rule.

    A choice is reported by its letter: the official normalisation reads ``(b)`` as option B even when ``(b)`` is
    the text of another option.
    """
    cleaned = _clean(text)
    if not cleaned:
        return None
    letters = option_letters(choices)
    exact = [i for i, choice in enumerate(choices) if _clean(choice) == cleaned]
    if exact:
        return letters[exact[0]]
    start = _LETTER_START.match(cleaned)
    letter = next(g for g in start.groups() if g).upper() if start else None
    if letter in letters:
        return letter
    marked = [m.group(1).upper() for m in _LETTER_PAREN.finditer(cleaned) if m.group(1).upper() in letters]
    if marked:
        return marked[-1]
    named = _last_named_choice(cleaned, choices)
    return letters[choices.index(named)] if named else cleaned.splitlines()[-1][-_NEAREST_CHARS:].strip()


def _to_number(answer: str) -> str | None:
    """``answer`` as a plain number string: as written, else its value (math-verify), else its first number."""
    plain = _PERCENT.sub("", _clean(answer).replace(",", ""))
    try:
        float(plain)
        return plain
    except ValueError:
        pass
    for value in parse_answer(answer):
        if isinstance(value, sympy.Basic) and value.is_number and value.is_real:
            with contextlib.suppress(OverflowError, TypeError, ValueError):
                return str(float(value))
    number = NUMBER.search(answer)
    return number.group().replace(",", "") if number else None


def extract_mathvista(text: str, record: Mapping[str, Any]) -> str | None:
    """Rule-based extraction: an option letter or choice text, a number, or a ``[...]`` list; None if none."""
    answer = extract_answer(text)
    if record.get("question_type") == "multi_choice":
        return _extract_choice(answer or text, list(record.get("choices") or []))
    if record.get("answer_type") == "list":
        lists = _LIST.findall(answer or text)
        return lists[-1] if lists else answer
    if record.get("answer_type") not in ("integer", "float"):
        return answer
    if answer is not None:
        return _to_number(answer)
    numbers = NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def _canonical_list(extraction: str) -> str:
    """A list of numbers as Python prints it (``[1, 2.5]``), the form MathVista's list answers take."""
    numbers = NUMBER.findall(extraction)
    if not numbers:
        return extraction.strip()
    return str([float(n) if "." in n else int(n) for n in (n.replace(",", "") for n in numbers)])


def normalize_extracted_answer(extraction: str | None, record: Mapping[str, Any]) -> str | None:
    """The official normalisation of an extraction to the row's answer form; None where it has none.

    A float row without ``precision`` is rounded to the gold answer's number of decimals.
    """
    if extraction is None:
        return None
    answer_type = record.get("answer_type")
    if record.get("question_type") == "multi_choice":
        choices = [str(c) for c in record.get("choices") or []]
        if not choices:
            return None
        text = extraction.strip()
        marked = _LETTER_PAREN.findall(text)
        if marked:
            text = marked[0].upper()
        letters = option_letters(choices)
        if text in letters:
            return choices[letters.index(text)]
        return min(choices, key=lambda choice: levenshtein(text, choice))
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            precision = record.get("precision")
            if precision is None:
                precision = len(str(record.get("answer", "")).partition(".")[2])
            return str(round(float(extraction), int(precision)))
        if answer_type == "list":
            return _canonical_list(extraction)
    except (ValueError, OverflowError, TypeError):
        return None
    return extraction.strip()


def grade_mathvista(
    response: str,
    record: Mapping[str, Any],
    *,
    think_opened_by_prompt: bool = False,
    finish_reason: str | None = None,
    extractor: Extractor | None = None,
) -> Grade:
    """Grade a response to a MathVista row (``answer``, ``question_type``, ``answer_type``, ``choices``, ``precision``).

    ``Grade.extracted`` is the raw extraction (e.g. the letter ``"B"``), before normalisation.
    """
    text, truncated = answer_text(response, think_opened_by_prompt, finish_reason)
    extracted = (extractor or extract_mathvista)(text, record) if text else None
    prediction = normalize_extracted_answer(extracted, record)
    correct = not truncated and prediction is not None and prediction == str(record.get("answer"))
    return Grade(extracted, correct, truncated)


def build_extraction_prompt(query: str, response: str) -> str:
    """The few-shot prompt asking a judge model to extract the answer to ``query`` from ``response``."""
    return f"{_DEMO_PROMPT}\n\n{query.strip()}\n\nModel response: {response.strip()}\n\nExtracted answer: "


class JudgeExtractor:
    """MathVista's LLM extraction step, with any OpenAI-compatible server: ``grade_mathvista(..., extractor=judge)``."""

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", *, max_tokens: int = 64) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key)
        self.model = model
        self.max_tokens = max_tokens

    def __call__(self, text: str, record: Mapping[str, Any]) -> str | None:
        prompt = build_extraction_prompt(str(record.get("query") or record.get("question") or ""), text)
        reply = self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=self.max_tokens,
        )
        return (reply.choices[0].message.content or "").strip() or None
