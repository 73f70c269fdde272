"""The Results tab's data: evalsuite run directories → summary table, plot and a per-sample browser."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from k15.evalsuite.report import load_summary, plot_accuracy_vs_tokens
from k15.jsonl import read_rows

SUMMARY_COLUMNS = ["run", "task", "model", "pass@1", "maj@n", "mean tokens", "mean reasoning tokens", "truncated"]
SAMPLE_COLUMNS = ["run", "task", "id", "sample", "model", "correct", "truncated", "extracted", "gold", "tokens"]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def load_runs(dirs: list[Path]) -> tuple[list[list[Any]], Path, list[dict[str, Any]]]:
    """Summary rows, a plot PNG and every sample (tagged with its run) of the given run directories."""
    if not dirs:
        raise ValueError("give at least one evalsuite results directory")
    results, samples = [], []
    for run_dir in dirs:
        summary = load_summary(run_dir)
        for row in summary["results"]:
            results.append({**row, "run": run_dir.name})
        for file in sorted((run_dir / "samples").glob("*.jsonl")):
            samples += [{**row, "run": run_dir.name} for row in read_rows(file)[0]]
    rows = [[r["run"], r["task"], r["model"], _pct(r.get("pass@1")), _pct(r.get("maj@n")),
             round(r.get("mean_completion_tokens") or 0), round(r.get("mean_reasoning_tokens") or 0),
             _pct(r.get("truncation_rate"))] for r in results]  # fmt: skip
    plot = Path(tempfile.mkdtemp(prefix="k15-ui-")) / "accuracy_vs_tokens.png"
    plot_accuracy_vs_tokens(results, plot)
    return rows, plot, samples


def disagreements(samples: list[dict[str, Any]]) -> set[tuple[str, str, str, int]]:
    """(run, task, id, sample) keys where the models of a run disagree on correctness."""
    verdicts: dict[tuple[str, str, str, int], set[bool]] = {}
    for s in samples:
        verdicts.setdefault((s["run"], s["task"], s["id"], s["sample"]), set()).add(bool(s["correct"]))
    return {key for key, seen in verdicts.items() if len(seen) > 1}


def filter_samples(samples: list[dict[str, Any]], correctness: str, only_disagreements: bool) -> list[dict[str, Any]]:
    """``correctness``: "all", "correct" or "wrong"; ``only_disagreements``: keep items the modes disagree on."""
    keep = disagreements(samples) if only_disagreements else None
    out = []
    for s in samples:
        if correctness != "all" and bool(s["correct"]) != (correctness == "correct"):
            continue
        if keep is not None and (s["run"], s["task"], s["id"], s["sample"]) not in keep:
            continue
        out.append(s)
    return out


def sample_rows(samples: list[dict[str, Any]]) -> list[list[Any]]:
    return [[s["run"], s["task"], s["id"], s["sample"], s["model"], "✓" if s["correct"] else "✗",
             "yes" if s["truncated"] else "", s.get("extracted") or "", s.get("gold") or "",
             s.get("completion_tokens", 0)] for s in samples]  # fmt: skip


def sample_details(sample: dict[str, Any]) -> str:
    """Markdown of one sample: problem, reasoning, answer, extracted answer and the verdict."""
    verdict = "correct ✓" if sample["correct"] else "wrong ✗"
    if sample.get("truncated"):
        verdict += " (truncated)"
    parts = [f"### {sample['task']} · {sample['id']} · {sample['model']} — {verdict}",
             f"**Problem**\n\n{sample.get('prompt') or ''}"]  # fmt: skip
    if sample.get("reasoning"):
        parts.append(f"<details><summary>Reasoning ({sample.get('reasoning_tokens', 0)} tokens)</summary>\n\n"
                     f"{sample['reasoning']}\n\n</details>")  # fmt: skip
    parts += [f"**Answer**\n\n{sample.get('answer') or '*(none)*'}",
              f"**Extracted:** `{sample.get('extracted')}` · **gold:** `{sample.get('gold')}`"]  # fmt: skip
    if sample.get("error"):
        parts.append(f"**Error:** {sample['error']}")
    return "\n\n".join(parts)
