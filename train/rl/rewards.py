"""Rewards: the verifier (:mod:`k15.grading`, one grader for evaluation and RL) and the length penalty (§2.3.3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k15.grading import Grade, grade


def verifier_reward(grader: str, response: str, record: Mapping[str, Any], finish_reason: str | None = None) -> Grade:
    """r ∈ {0, 1}: the shared grader (:mod:`k15.grading`) on a response to a k15 long-CoT prompt (the prompt
    opened the thinking)."""
    return grade(grader, response, record, think_opened_by_prompt=True, finish_reason=finish_reason)


def length_rewards(lengths: Sequence[int], correct: Sequence[bool]) -> list[float]:
    """Kimi k1.5's length reward for the k responses to one prompt (§2.3.3).

    λ_i = 0.5 − (len_i − min_len) / (max_len − min_len), and 0 for all when every length is equal;
    the reward is λ_i for a correct response and min(0, λ_i) for a wrong one (wrong answers are never rewarded
    for brevity, long wrong ones are penalised).
    """
    if len(lengths) != len(correct):
        raise ValueError(f"{len(lengths)} lengths but {len(correct)} correctness flags")
    shortest, longest = min(lengths), max(lengths)
    if longest == shortest:
        return [0.0] * len(lengths)
    rewards = []
    for length, ok in zip(lengths, correct, strict=True):
        lam = 0.5 - (length - shortest) / (longest - shortest)
        rewards.append(lam if ok else min(0.0, lam))
    return rewards
