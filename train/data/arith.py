"""The CPU demo task: arithmetic word problems with difficulty levels 1–5, small enough for SmolLM2-135M to learn.

A level-L problem chains L operations (add, subtract, multiply, exact divide) on a count of objects; level 1 uses
numbers up to 20, each higher level somewhat larger ones; every intermediate value and the answer lie in 1..999.
Everything is deterministic from the seed. Rows follow the RL prompt-set format of :mod:`k15.train.data.formats`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from k15.jsonl import write_rows
from k15.train.data.generation import distinct_problems

LEVELS = (1, 2, 3, 4, 5)
MAX_VALUE = 999
NAMES = ("Mia", "Leo", "Ava", "Noah", "Emma", "Liam", "Zoe", "Omar", "Lily", "Ravi", "Sara", "Ben")
OBJECTS = ("apples", "marbles", "stickers", "pencils", "cookies", "books", "stamps", "shells", "cards", "balloons")
SENTENCES = {
    "+": ("{name} buys {n} more {obj}.", "{name} finds {n} more {obj}.", "{friend} gives {name} {n} more {obj}."),
    "-": ("{name} gives {n} {obj} to {friend}.", "{name} sells {n} {obj}.", "{name} loses {n} {obj}."),
    "*": ("Then {name} ends up with {n} times as many {obj} as before.",),
    "/": ("{name} splits the {obj} into {n} equal groups and keeps one group.",
          "{name} packs the {obj} equally into {n} bags and keeps one bag."),
}  # fmt: skip
_STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}


def apply(a: int, op: str, n: int) -> int:
    """``a op n`` for the four operations (``/`` only where it is exact)."""
    if op == "/":
        if a % n:
            raise ValueError(f"{a} / {n} is not exact")
        return a // n
    return {"+": a + n, "-": a - n, "*": a * n}[op]


def bound(level: int) -> int:
    """The largest starting number and addend/subtrahend at ``level``: 20 at level 1, then 30, 40, …"""
    return 20 if level == 1 else 10 * (level + 1)


def _operand(rng: random.Random, value: int, op: str, limit: int) -> int | None:
    """A random operand keeping the result in 1..999, or None when ``op`` cannot apply to ``value``."""
    if op == "+":
        choices = range(1, min(limit, MAX_VALUE - value) + 1)
    elif op == "-":
        choices = range(1, min(limit, value - 1) + 1)
    elif op == "*":
        choices = range(2, min(5, MAX_VALUE // value) + 1)
    else:
        choices = [n for n in range(2, 10) if value % n == 0 and n < value]
    return rng.choice(choices) if choices else None


def _problem(rng: random.Random, level: int) -> tuple[str, list[str], int]:
    """One level-``level`` problem: its text, its steps and its answer."""
    name, friend = rng.sample(NAMES, 2)
    obj = rng.choice(OBJECTS)
    value = rng.randint(2, bound(level))
    sentences, steps = [f"{name} has {value} {obj}."], []
    for _ in range(level):
        options = [(op, n) for op in SENTENCES if (n := _operand(rng, value, op, bound(level))) is not None]
        op, n = rng.choice(options)
        result = apply(value, op, n)
        sentences.append(rng.choice(SENTENCES[op]).format(name=name, friend=friend, n=n, obj=obj))
        steps.append(f"{value} {op} {n} = {result}")
        value = result
    sentences.append(f"How many {obj} does {name} have now?")
    return " ".join(sentences), steps, value


def generate(count: int, seed: int = 0, levels: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """``count`` distinct problems, ``levels`` (default: all) in turn; rows: id, problem, answer, difficulty
    (level), grader, steps."""

    def draw(rng: random.Random, level: int) -> tuple[str, dict[str, Any]]:
        text, steps, answer = _problem(rng, level)
        return text, {"problem": text, "answer": str(answer), "difficulty": level, "grader": "math", "steps": steps}

    return distinct_problems("arith", count, seed, levels, LEVELS, draw)


def check_steps(row: dict[str, Any]) -> list[tuple[int, str, int, int]]:
    """The row's steps as (a, op, n, result), verified: each is right, each starts from the last result and the
    last result is the answer. ValueError otherwise."""
    parsed = []
    for step in row["steps"]:
        match = _STEP.fullmatch(step)
        if not match:
            raise ValueError(f"{row['id']}: malformed step {step!r}")
        a, op, n, result = int(match[1]), match[2], int(match[3]), int(match[4])
        if apply(a, op, n) != result or (parsed and parsed[-1][3] != a):
            raise ValueError(f"{row['id']}: wrong step {step!r}")
        parsed.append((a, op, n, result))
    if not parsed or str(parsed[-1][3]) != str(row["answer"]):
        raise ValueError(f"{row['id']}: the steps do not end at the answer {row['answer']}")
    return parsed


def trace(row: dict[str, Any]) -> str:
    """A verified long-CoT response to ``row``: one line per step, a check that undoes the steps, then the answer.

    Written as it follows a k15 prompt: the chat template's generation prompt already opens ``<think>\\n``, so the
    response starts inside the think block (no ``<think>`` of its own) and closes it: ``steps\\n</think>\\n\\nanswer``
    (see :func:`k15.train.data.warmup.sft_response`).
    """
    from k15.train.data.warmup import sft_response

    steps = check_steps(row)
    lines = [f"Step {i}: {a} {op} {n} = {result}" for i, (a, op, n, result) in enumerate(steps, 1)]
    undo = [f"{result} {_INVERSE[op]} {n} = {a}" for a, op, n, result in reversed(steps)]
    lines.append(f"Check: {', '.join(undo)}, the starting number. Correct.")
    return sft_response("\n".join(lines), f"The answer is $\\boxed{{{row['answer']}}}$.")


def make_splits(out_dir: str | Path, train: int = 2000, heldout: int = 200, sft: int = 500, seed: int = 0,
                levels: Sequence[int] | None = None) -> dict[str, Path]:  # fmt: skip
    """Write ``train.jsonl`` and ``heldout.jsonl`` (RL prompts) and ``sft.jsonl`` (prompt/response traces) to
    ``out_dir``, from disjoint slices of one set of distinct problems of ``levels`` (default: all); returns the
    paths by split."""
    from k15.prompts import MATH_PROMPT

    rows = generate(heldout + train + sft, seed, levels)
    out, paths = Path(out_dir), {}
    splits = {"heldout": rows[:heldout], "train": rows[heldout : heldout + train]}
    sft_rows = [{"id": r["id"], "prompt": MATH_PROMPT.format(problem=r["problem"]), "response": trace(r)}
                for r in rows[heldout + train :]]  # fmt: skip
    for name, split in (*splits.items(), ("sft", sft_rows)):
        paths[name] = out / f"{name}.jsonl"
        write_rows(paths[name], split)
    return paths
