"""Countdown, the demo task whose long CoT searches: reach a target from 3–4 numbers with ``+ - * /``, each number
used once (graded by :mod:`k15.grading.countdown`).

Warm-up traces are depth-first searches in the style of Stream of Search (Gandhi et al. 2024, arXiv 2404.03683):
each ``Try`` line combines two numbers and shows what is left; with two numbers left it tries the operations in
turn; a failed branch says ``Dead end``, a subtree given up says ``Back to …``; the found expression is checked
step by step before the answer. Children are visited in a heuristic order (closest to the target first) perturbed
by a per-sample random draw, so one problem's traces differ in length, and a trace cut short finds less.
Intermediate values stay positive whole numbers (``a - b`` with ``a > b``, exact ``a / b`` with ``b > 1``).

Levels (:data:`LEVELS`): 1 — three numbers 1–9; 2 — three numbers 2–19; 3 — four numbers 1–9 and a target with many
solution paths (≥ 12); 4 — four numbers 1–9, fewer paths (4–11); targets 10–99. Everything is deterministic from
the seed. Rows follow the prompt-set format of :mod:`k15.train.data.formats`, with ``grader: countdown``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from k15.grading.countdown import check_solution
from k15.jsonl import write_rows
from k15.train.data.generation import distinct_problems


@dataclass(frozen=True)
class Level:
    """Problems of one difficulty: how many numbers, their range, and how many solution paths the target has."""

    size: int
    low: int
    high: int
    min_solutions: int = 1
    max_solutions: int | None = None

    def admits(self, paths: int) -> bool:
        return paths >= self.min_solutions and (self.max_solutions is None or paths <= self.max_solutions)


LEVELS: dict[int, Level] = {1: Level(3, 1, 9), 2: Level(3, 2, 19), 3: Level(4, 1, 9, min_solutions=12),
                            4: Level(4, 1, 9, min_solutions=4, max_solutions=11)}  # fmt: skip
TARGETS = range(10, 100)
MAX_LEAVES = 12  # a trace gives up after this many two-number states (a few hundred tokens)
BRANCH = 3  # children tried in a three-number state below the root before backing up


@dataclass(frozen=True)
class Step:
    """``a op b = value``, with the expressions that ``a``, ``b`` and the result stand for."""

    a: int
    op: str
    b: int
    value: int
    expression: str

    def __str__(self) -> str:
        return f"{self.a}{self.op}{self.b}={self.value}"


Item = tuple[int, str]  # a number still in play and the expression it stands for


def combinations(a: Item, b: Item) -> Iterator[Step]:
    """The allowed operations on two numbers, larger first: sum, difference, product, exact quotient."""
    (x, ex), (y, ey) = (a, b) if a[0] >= b[0] else (b, a)
    wrap = [e if e.isdigit() else f"({e})" for e in (ex, ey)]
    yield Step(x, "+", y, x + y, f"{wrap[0]}+{wrap[1]}")
    if x > y:
        yield Step(x, "-", y, x - y, f"{wrap[0]}-{wrap[1]}")
    yield Step(x, "*", y, x * y, f"{wrap[0]}*{wrap[1]}")
    if y > 1 and x % y == 0:
        yield Step(x, "/", y, x // y, f"{wrap[0]}/{wrap[1]}")


def children(state: Sequence[Item]) -> Iterator[tuple[Step, list[Item]]]:
    """Every way to combine two of ``state``'s numbers, with the numbers left after it."""
    for i in range(len(state)):
        for j in range(i + 1, len(state)):
            rest = [item for k, item in enumerate(state) if k not in (i, j)]
            for step in combinations(state[i], state[j]):
                yield step, [*rest, (step.value, step.expression)]


@lru_cache(maxsize=65536)
def solution_paths(numbers: tuple[int, ...]) -> Counter[int]:
    """Every value an expression using all of ``numbers`` (sorted) once can take, with how many orders of
    combination reach it (the search tree's leaves of that value)."""
    if len(numbers) == 1:
        return Counter(numbers)
    paths: Counter[int] = Counter()
    for _, rest in children([(n, str(n)) for n in numbers]):
        paths.update(solution_paths(tuple(sorted(v for v, _ in rest))))
    return paths


def show(state: Sequence[Item]) -> str:
    return " ".join(str(v) for v, _ in sorted(state, key=lambda item: -item[0]))


@dataclass
class Search:
    """One depth-first search for ``target``, written out line by line."""

    target: int
    rng: random.Random
    noise: float
    budget: int = MAX_LEAVES  # two-number states it may try before it gives up
    lines: list[str] = field(default_factory=list)
    leaves: int = 0

    def ordered(self, state: Sequence[Item]) -> list[tuple[Step, list[Item]]]:
        """Children closest to the target first, perturbed by this sample's noise; a step that repeats another
        (the same numbers combined the same way, as with 5, 5 and 15) is tried once."""
        unique = {(str(s), tuple(sorted(v for v, _ in r))): (s, r) for s, r in children(state)}
        scored = [(abs(self.target - s.value) / self.target + self.rng.uniform(0, self.noise), s, r)
                  for s, r in unique.values()]  # fmt: skip
        return [(s, r) for _, s, r in sorted(scored, key=lambda t: t[0])]

    def explore(self, state: list[Item], depth: int, path: list[Step]) -> list[Step] | None:
        """Search ``state``; the steps to the target, or None (dead end or budget spent)."""
        indent = " " * depth
        options = self.ordered(state)
        if depth > 0:
            options = options[:BRANCH]
        for step, rest in options:
            if self.leaves >= self.budget:
                return None
            if len(rest) > 2:
                self.lines.append(f"{indent}Try {step}, left {show(rest)}.")
                found = self.explore(rest, depth + 1, [*path, step])
                if found:
                    return found
                if self.leaves < self.budget:
                    self.lines.append(f"{indent} Back to {show(state)}.")
                continue
            self.leaves += 1
            tried = []
            for last in combinations(*rest):
                tried.append(str(last))
                if last.value == self.target:
                    self.lines.append(f"{indent}Try {step}, left {show(rest)}: {', '.join(tried)}. Found.")
                    return [*path, step, last]
            self.lines.append(f"{indent}Try {step}, left {show(rest)}: {', '.join(tried)}. Dead end.")
        return None


def problem_text(numbers: Sequence[int], target: int) -> str:
    listed = ", ".join(str(n) for n in numbers[:-1]) + f" and {numbers[-1]}"
    return (f"Make {target} from the numbers {listed}. Use each number exactly once, with +, -, * and /; "
            "give the expression.")  # fmt: skip


def trace(row: dict[str, Any], seed: int, noise: float = 0.6, budget: int = MAX_LEAVES) -> tuple[str, bool]:
    """A search trace for ``row`` (its order drawn from ``seed``) as a response after a k15 prompt, and whether it
    found the target within ``budget`` two-number states; one that did not ends by saying so, without an answer
    (see :func:`k15.train.data.warmup.sft_response` for the think-block convention)."""
    from k15.train.data.warmup import sft_response

    numbers, target = [int(n) for n in row["numbers"]], int(row["target"])
    search = Search(target, random.Random(seed), noise, budget)
    search.lines.append(f"Goal {target} from {show([(n, str(n)) for n in numbers])}.")
    steps = search.explore([(n, str(n)) for n in numbers], 0, [])
    if steps is None:
        search.lines.append("No expression found within my budget.")
        return sft_response("\n".join(search.lines), "I could not find an expression."), False
    expression = steps[-1].expression
    check_solution(expression, numbers, target)  # every written answer verifies
    search.lines.append(f"Check: {', '.join(str(s) for s in steps)}. Uses {show([(n, '') for n in numbers])} once "
                        "each. Correct.")  # fmt: skip
    return sft_response("\n".join(search.lines), f"The answer is $\\boxed{{{expression}}}$."), True


def generate(count: int, seed: int = 0, levels: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """``count`` distinct problems, ``levels`` (default: all) in turn; rows: id, problem, numbers, target, answer
    (one solution), difficulty (level), grader."""

    def draw(rng: random.Random, level: int) -> tuple[Hashable, dict[str, Any]] | None:
        spec = LEVELS[level]
        numbers = [rng.randint(spec.low, spec.high) for _ in range(spec.size)]
        paths = solution_paths(tuple(sorted(numbers)))
        targets = [t for t in TARGETS if paths[t] and spec.admits(paths[t])]
        if not targets:
            return None
        target = rng.choice(targets)
        row = {"problem": problem_text(numbers, target), "numbers": numbers, "target": target,
               "answer": solve(numbers, target), "difficulty": level, "grader": "countdown"}  # fmt: skip
        return (tuple(sorted(numbers)), target), row

    return distinct_problems("countdown", count, seed, levels, LEVELS, draw)


def solve(numbers: Sequence[int], target: int) -> str:
    """One expression for ``target`` (exhaustive search; ``target`` must be reachable)."""

    def first(state: list[Item]) -> str | None:
        if len(state) == 1:
            return state[0][1] if state[0][0] == target else None
        for _, rest in children(state):
            if solution_paths(tuple(sorted(v for v, _ in rest)))[target] and (found := first(rest)):
                return found
        return None

    found = first([(n, str(n)) for n in numbers])
    if found is None:
        raise ValueError(f"{target} cannot be made from {list(numbers)}")
    return found


def make_splits(out_dir: str | Path, train: int = 2000, heldout: int = 200, sft: int = 500, seed: int = 0,
                levels: Sequence[int] | None = None, min_budget: int | None = None) -> dict[str, Path]:  # fmt: skip
    """Write ``train.jsonl`` and ``heldout.jsonl`` (RL prompts) and ``sft.jsonl`` (prompt/response search traces)
    to ``out_dir``, from disjoint slices of one set of distinct problems of ``levels`` (default: all).

    ``min_budget`` None: every trace may try :data:`MAX_LEAVES` two-number states and only those that found the
    target are kept. An integer: each trace draws its budget from ``min_budget``..MAX_LEAVES and the traces that
    spend it and give up are kept too, so the warm-up model learns to end a failed search rather than loop."""
    from k15.prompts import MATH_PROMPT

    if min_budget is not None and not 1 <= min_budget <= MAX_LEAVES:
        raise ValueError(f"min_budget must be between 1 and {MAX_LEAVES}, got {min_budget}")
    rows = generate(heldout + train + sft, seed, levels)
    out, paths = Path(out_dir), {}
    splits = {"heldout": rows[:heldout], "train": rows[heldout : heldout + train]}
    sft_rows = []
    for i, row in enumerate(rows[heldout + train :]):
        trace_seed = seed * 1_000_003 + i
        budget = MAX_LEAVES if min_budget is None else random.Random(-trace_seed - 1).randint(min_budget, MAX_LEAVES)
        response, found = trace(row, trace_seed, budget=budget)
        if found or min_budget is not None:
            sft_rows.append({"id": row["id"], "prompt": MATH_PROMPT.format(problem=row["problem"]),
                             "response": response, "difficulty": row["difficulty"]})  # fmt: skip
    for name, split in (*splits.items(), ("sft", sft_rows)):
        paths[name] = out / f"{name}.jsonl"
        write_rows(paths[name], split)
    return paths
