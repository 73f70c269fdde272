"""Which problems an RL iteration trains on (§2.3.4): curriculum and prioritized sampling, both switchable.

- Curriculum: problems sorted easy → hard (by a difficulty field or a measured pass rate); at training progress
  p ∈ [0, 1] only the easiest ``start + (1 − start)·p`` fraction is eligible.
- Prioritized: problem i is drawn with probability ∝ 1 − s_i, s_i its success rate tracked over the run.
The statistics and the random state are saved with checkpoints (:meth:`ProblemSampler.state_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


class ProblemSampler:
    def __init__(
        self,
        difficulty: Sequence[float],
        curriculum: bool = True,
        prioritized: bool = True,
        curriculum_start: float = 0.3,
        seed: int = 0,
    ) -> None:
        if not difficulty:
            raise ValueError("no problems to sample from")
        if not 0 < curriculum_start <= 1:
            raise ValueError(f"curriculum_start must be in (0, 1], got {curriculum_start}")
        self.order = np.argsort(np.asarray(difficulty, dtype=float), kind="stable")  # easy → hard
        self.curriculum = curriculum
        self.prioritized = prioritized
        self.curriculum_start = curriculum_start
        self.attempts = np.zeros(len(difficulty))
        self.successes = np.zeros(len(difficulty))
        self.rng = np.random.default_rng(seed)

    def success_rate(self) -> np.ndarray:
        """s_i: the fraction of correct samples so far (0 for problems not seen yet)."""
        return np.divide(self.successes, self.attempts, out=np.zeros_like(self.successes), where=self.attempts > 0)

    def eligible(self, progress: float) -> np.ndarray:
        """Indices the curriculum allows at ``progress`` (all of them without curriculum)."""
        if not self.curriculum:
            return self.order
        fraction = self.curriculum_start + (1 - self.curriculum_start) * min(max(progress, 0.0), 1.0)
        return self.order[: max(1, math.ceil(fraction * len(self.order)))]

    def probabilities(self, progress: float) -> tuple[np.ndarray, np.ndarray]:
        """The eligible problems and their sampling probabilities."""
        pool = self.eligible(progress)
        weights = 1.0 - self.success_rate()[pool] if self.prioritized else np.ones(len(pool))
        if weights.sum() <= 0:  # every eligible problem always solved: fall back to uniform
            weights = np.ones(len(pool))
        return pool, weights / weights.sum()

    def sample(self, count: int, progress: float) -> list[int]:
        """``count`` distinct problems (fewer if fewer are eligible), drawn by the rules above."""
        pool, probs = self.probabilities(progress)
        nonzero = int((probs > 0).sum())
        picked = self.rng.choice(pool, size=min(count, nonzero), replace=False, p=probs)
        return [int(i) for i in picked]

    def update(self, index: int, rewards: Sequence[float]) -> None:
        """Record the verifier rewards (1 correct, 0 wrong) of one problem's samples."""
        self.attempts[index] += len(rewards)
        self.successes[index] += float(sum(r > 0 for r in rewards))

    def state_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts.tolist(), "successes": self.successes.tolist(),
                "rng": self.rng.bit_generator.state}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["attempts"]) != len(self.attempts):
            raise ValueError(
                f"sampler state covers {len(state['attempts'])} problems, the data has {len(self.attempts)}"
            )
        self.attempts = np.asarray(state["attempts"], dtype=float)
        self.successes = np.asarray(state["successes"], dtype=float)
        self.rng.bit_generator.state = state["rng"]
