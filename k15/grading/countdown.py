"""Countdown scoring: the final answer is an arithmetic expression that uses each given number exactly once and
evaluates (exactly, in fractions) to the target.

The expression is the last ``\\boxed{}`` after the thinking (else the last "answer is …"), as for math. It may use
``+ - * /`` (also ``×``, ``\\times``, ``÷``, ``\\div``, ``\\cdot``) and parentheses, and may end in ``= target``.
Anything else — another number, a number used twice or left out, a wrong value, division by zero, a malformed
expression — is wrong.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from k15.grading import Grade, answer_text, extract_answer

MAX_EXPRESSION_CHARS = 200
_SPELLINGS = (("\\times", "*"), ("\\cdot", "*"), ("×", "*"), ("·", "*"), ("\\div", "/"), ("÷", "/"), ("−", "-"),
              ("\\left", ""), ("\\right", ""), ("\\(", ""), ("\\)", ""), ("$", ""))  # fmt: skip
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class ExpressionError(ValueError):
    """Why an answer is not a valid Countdown solution."""


def _normalise(expression: str) -> str:
    text = expression.strip()
    for spelling, plain in _SPELLINGS:
        text = text.replace(spelling, plain)
    text = re.sub(r"\\[a-z]+\{([^{}]*)\}", r"\1", text)  # \text{…}, \mathrm{…}
    return text.replace("{", "(").replace("}", ")").strip().rstrip(".")


def evaluate(expression: str) -> tuple[Fraction, list[int]]:
    """The exact value of ``expression`` and the numbers it uses, in order; ExpressionError if it is not made of
    non-negative integers, ``+ - * /`` and parentheses, or divides by zero."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"not an arithmetic expression: {expression!r}") from exc
    used: list[int] = []

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Div):
                if right == 0:
                    raise ExpressionError("division by zero")
                return left / right
            return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}[type(node.op)]
        raise ExpressionError(f"only whole numbers, + - * / and parentheses may appear: {ast.unparse(node)!r}")

    return value(tree), used


def check_solution(answer: str, numbers: Sequence[int], target: int) -> None:
    """ExpressionError saying what is wrong unless ``answer`` uses each of ``numbers`` once and equals ``target``."""
    expression = _normalise(answer)
    if "=" in expression:
        expression, _, result = expression.partition("=")
        if _normalise(result) != str(target):
            raise ExpressionError(f"claims {result.strip()!r}, the target is {target}")
    total, used = evaluate(expression)
    if Counter(used) != Counter(numbers):
        raise ExpressionError(f"uses {sorted(used)}, must use each of {sorted(numbers)} exactly once")
    if total != target:
        raise ExpressionError(f"evaluates to {total}, not {target}")


def grade_countdown(
    response: str, record: Mapping[str, Any], *, think_opened_by_prompt: bool = False,
    finish_reason: str | None = None,
) -> Grade:  # fmt: skip
    """Grade ``response`` to a Countdown row (``numbers``, ``target``)."""
    text, truncated = answer_text(response, think_opened_by_prompt, finish_reason)
    extracted = None if truncated else extract_answer(text)
    if extracted is None:
        return Grade(None, False, truncated)
    try:
        check_solution(extracted, [int(n) for n in record["numbers"]], int(record["target"]))
    except ExpressionError:
        return Grade(extracted, False, truncated)
    return Grade(extracted, True, truncated)
