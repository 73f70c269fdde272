"""evalsuite.metrics: pass@k, majority vote and the per-(task, model) summary, checked against hand-computed values."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations
from typing import Any

import pytest

from k15.evalsuite.metrics import majority_answer, pass_at_k, summarize


def brute_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """The share of the k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(combinations(range(n), k))
    return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(4, 1, 1, 0.25), (4, 2, 2, 5 / 6), (4, 0, 2, 0.0), (4, 4, 1, 1.0), (4, 2, 3, 1.0), (8, 3, 4, 1 - 5 / 70)],
)
def test_pass_at_k_hand_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("n", "c", "k"), [(5, 2, 2), (6, 1, 3), (7, 3, 2), (8, 2, 5), (10, 4, 4), (9, 0, 3), (6, 6, 2)]
)
def test_pass_at_k_matches_enumeration(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(float(brute_pass_at_k(n, c, k)), abs=1e-12)


def test_pass_at_k_is_stable_for_many_samples() -> None:
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert pass_at_k(1000, 10, 100) == pytest.approx(1 - 0.9**10, rel=0.02)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_impossible_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(n, c, k)


@pytest.mark.parametrize(
    ("extracted", "expected"),
    [
        (["4", "$4$", " 4. ", "5", "5"], "4"),  # normalised, "4" has three votes
        (["\\frac{1}{2}", "\\frac {1}{2}", "3"], "\\frac{1}{2}"),
        (["5", "4", "4", "5"], "5"),  # a tie: the first seen wins
        (["b", "a"], "b"),
        ([None, None, "3"], "3"),  # None never wins
        ([None, None], None),
        (["", "$", " . "], None),  # nothing left after normalisation
        ([], None),
    ],
)
def test_majority_answer(extracted: list[str | None], expected: str | None) -> None:
    assert majority_answer(extracted) == expected


def sample(item: str, index: int, extracted: str | None, correct: bool, tokens: int, reasoning: int, **extra: Any):
    return {
        "task": "math500", "model": "m", "id": item, "sample": index, "gold": "?", "extracted": extracted,
        "correct": correct, "truncated": False, "completion_tokens": tokens, "reasoning_tokens": reasoning,
        "latency_s": 1.0, "error": None, **extra,
    }  # fmt: skip


SAMPLES = [
    sample("a", 0, "4", True, 100, 80),
    sample("a", 1, "$4$", True, 200, 150),
    sample("a", 2, "5", False, 300, 250),
    sample("a", 3, None, False, 1000, 1000, truncated=True),
    sample("b", 0, "3", False, 400, 300),
    sample("b", 1, "3 ", False, 500, 400),
    sample("b", 2, "7", True, 600, 500),
    sample("b", 3, None, False, 0, 0, error="timeout after 3 tries"),
]


def test_summarize_two_items_of_four_samples() -> None:
    summary = summarize(SAMPLES, wall_s=12.5)
    # item a: 2/4 correct, majority "4" (right); item b: 1/4 correct, majority "3" (wrong), one errored sample.
    expected = {
        "n_items": 2,
        "n_samples": 8,
        "samples_per_item": 4,
        "pass@1": (2 / 4 + 1 / 4) / 2,
        "pass@2": ((1 - 1 / 6) + (1 - 3 / 6)) / 2,  # 1 - C(2,2)/C(4,2) and 1 - C(3,2)/C(4,2)
        "pass@4": 1.0,
        "maj@n": 0.5,
        "mean_completion_tokens": 3100 / 7,  # the errored sample is left out
        "median_completion_tokens": 400,
        "mean_reasoning_tokens": 2680 / 7,
        "median_reasoning_tokens": 300,
        "truncation_rate": 1 / 7,
        "errors": 1,
        "wall_s": 12.5,
    }
    assert summary.keys() == expected.keys()
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value), key


def test_summarize_errored_sample_counts_as_wrong_even_if_flagged_correct() -> None:
    samples = [sample("a", 0, "4", True, 10, 5), sample("a", 1, "4", True, 0, 0, error="HTTP 500")]
    summary = summarize(samples)
    assert summary["pass@1"] == 0.5
    assert summary["pass@2"] == 1.0
    assert summary["errors"] == 1
    assert summary["mean_completion_tokens"] == 10


def test_summarize_majority_counts_errored_votes_out() -> None:
    samples = [
        sample("a", 0, "4", True, 10, 5),
        sample("a", 1, "9", False, 0, 0, error="x"),
        sample("a", 2, "9", False, 0, 0, error="x"),
    ]
    assert summarize(samples)["maj@n"] == 1.0


def test_summarize_pass_at_k_stops_at_the_fewest_samples_per_item() -> None:
    samples = [sample("a", i, "1", i == 0, 10, 5) for i in range(3)] + [
        sample("b", i, "2", True, 10, 5) for i in range(5)
    ]
    summary = summarize(samples)
    assert summary["samples_per_item"] == 5
    assert summary["pass@2"] == pytest.approx(((1 - 1 / 3) + 1.0) / 2)  # item a: 1 - C(2,2)/C(3,2)
    assert "pass@4" not in summary
    assert summary["pass@1"] == pytest.approx((1 / 3 + 1) / 2)
    assert summary["wall_s"] is None


def test_summarize_empty_and_all_errored() -> None:
    empty = summarize([], wall_s=3.0)
    assert empty["n_items"] == 0 and empty["samples_per_item"] == 0 and empty["errors"] == 0
    for key in ("pass@1", "maj@n", "mean_completion_tokens", "median_reasoning_tokens", "truncation_rate"):
        assert empty[key] is None, key
    assert "pass@2" not in empty
    assert empty["wall_s"] == 3.0

    failed = summarize([sample("a", i, None, False, 0, 0, error="down") for i in range(2)])
    assert failed["pass@1"] == 0.0 and failed["maj@n"] == 0.0 and failed["errors"] == 2
    assert failed["mean_completion_tokens"] is None and failed["truncation_rate"] is None
