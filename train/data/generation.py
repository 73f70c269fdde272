"""What the generated demo tasks share: distinct problems drawn level by level, deterministic from the seed."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Any

Draw = Callable[[random.Random, int], tuple[Hashable, dict[str, Any]] | None]
"""``draw(rng, level)`` → (what makes the problem distinct, its row without ``id``), or None when this draw made
no problem."""


def distinct_problems(task: str, count: int, seed: int, levels: Sequence[int] | None, known: Collection[int],
                      draw: Draw) -> list[dict[str, Any]]:  # fmt: skip
    """``count`` distinct rows from ``draw``, ``levels`` (None: all ``known``) in turn, ids ``<task>-<seed>-<n>``;
    ValueError for levels outside ``known`` or when distinct problems run out."""
    levels = tuple(known) if levels is None else levels
    if not levels or any(level not in known for level in levels):
        raise ValueError(f"levels must be a non-empty selection of {tuple(known)}, got {tuple(levels)}")
    rng, rows, seen, attempts = random.Random(seed), [], set(), 0
    while len(rows) < count:
        attempts += 1
        if attempts > 50 * count + 100:
            raise ValueError(f"only {len(rows)} distinct problems after {attempts - 1} attempts (asked for {count})")
        drawn = draw(rng, levels[len(rows) % len(levels)])
        if drawn is None or drawn[0] in seen:
            continue
        seen.add(drawn[0])
        rows.append({"id": f"{task}-{seed}-{len(rows)}", **drawn[1]})
    return rows
