"""Run reports: ``summary.json``, a Markdown table and an accuracy-versus-tokens plot, for one run or several.

``summary.json`` is ``{"run": run_info, "results": [result, ...]}``: ``run_info`` describes the run (the keys
rendered are ``tasks``, ``models``, ``samples``, ``sampling`` and ``wall_s``; any others are listed as they are) and
each result is an :func:`k15.evalsuite.metrics.summarize` dict with ``task`` and ``model`` added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from k15.jsonl import write_text_atomic

SUMMARY = "summary.json"
_PLOT_TITLE = "pass@1 against mean completion tokens"
_BUDGET_TITLE = "pass@1 against thinking budget"
_MARKERS = "osD^vP*Xph<>"
_RUN_INFO = {  # run-info keys shown first, with their names
    "tasks": "tasks",
    "models": "models",
    "samples": "samples per item",
    "sampling": "sampling",
    "wall_s": "wall time",
}
_COLUMNS = [
    ("pass@1", "pass@1"),
    ("maj@n", "maj@n"),
    ("mean_completion_tokens", "completion tok (mean)"),
    ("median_completion_tokens", "completion tok (median)"),
    ("mean_reasoning_tokens", "reasoning tok (mean)"),
    ("median_reasoning_tokens", "reasoning tok (median)"),
    ("truncation_rate", "truncated"),
    ("errors", "errors"),
    ("wall_s", "wall time"),
]


def write_summary(out_dir: Path, run_info: dict[str, Any], results: list[dict[str, Any]]) -> Path:
    """Write ``out_dir/summary.json`` atomically (a temporary file in ``out_dir``, then a rename); return its path."""
    for result in results:
        if not {"task", "model"} <= result.keys():
            raise ValueError(f"a result lacks 'task' or 'model': {sorted(result)}")
    return write_text_atomic(out_dir / SUMMARY, json.dumps({"run": run_info, "results": results}, indent=2) + "\n")


def load_summary(run_dir: Path) -> dict[str, Any]:
    """The summary of the run in ``run_dir``; ValueError naming the file when it is missing or malformed."""
    path = run_dir / SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no run summary here (is {run_dir} an `evalsuite run` output directory?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the run summary: {exc}") from None
    if not (
        isinstance(summary, dict)
        and isinstance(summary.get("run"), dict)
        and isinstance(summary.get("results"), list)
        and all(isinstance(r, dict) and isinstance(r.get("task"), str) for r in summary["results"])
        and all(isinstance(r.get("model"), str) for r in summary["results"])
    ):
        raise ValueError(f"{path}: not a run summary (expected run info and results with 'task' and 'model')")
    return summary


def summarized_models(run_dir: Path) -> set[str]:
    """The models with results in the summary of ``run_dir``; none when it has no summary yet."""
    return {r["model"] for r in load_summary(run_dir)["results"]} if (run_dir / SUMMARY).is_file() else set()


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _tokens(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _duration(seconds: float | None) -> str:
    """``42.0 s``, ``3m 05s`` or ``1h 02m``."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _cell(key: str, value: Any) -> str:
    if key in ("pass@1", "maj@n", "truncation_rate"):
        return _percent(value)
    if key == "wall_s":
        return _duration(value)
    return str(value) if key == "errors" else _tokens(value)


def _escape(text: Any) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(results: list[dict[str, Any]], run_label: str | None = None) -> str:
    """A Markdown table, a row per result (rates as percentages, missing values as "–").

    A leading ``run`` column holds each result's ``run`` key, else ``run_label``; it appears when either is set.
    """
    with_run = run_label is not None or any("run" in r for r in results)
    with_budget = any("thinking_budget" in r for r in results)
    header = (["run"] if with_run else []) + ["task", "model"] + (["thinking budget"] if with_budget else [])
    header += [title for _, title in _COLUMNS]
    align = ["---"] * (len(header) - len(_COLUMNS)) + ["--:"] * len(_COLUMNS)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for result in results:
        cells = ([result.get("run", run_label)] if with_run else []) + [result["task"], result["model"]]
        cells += [result.get("thinking_budget", "–")] if with_budget else []
        cells = [_escape(c) for c in cells] + [_cell(key, result.get(key)) for key, _ in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _series(result: dict[str, Any]) -> str:
    return f"{result['run']} · {result['model']}" if "run" in result else result["model"]


def _point_label(result: dict[str, Any]) -> str:
    budget = result.get("thinking_budget")
    return _series(result) + ("" if budget is None else f" @{budget}")


def annotate_apart(ax: Any, labels: list[tuple[str, float, float]], fontsize: float = 7) -> None:
    """Label points (text, x, y) so that no two labels overlap: from the lowest point up, a label that would cover
    one already placed moves up a line at a time, with a thin line back to its point."""
    ax.autoscale_view()
    to_points = 72 / ax.figure.dpi
    height, char = 1.25 * fontsize, 0.62 * fontsize  # a line and a character, in points
    placed: list[tuple[float, float, float]] = []  # left, bottom, width of each label, in points
    for text, x, y in sorted(labels, key=lambda label: (label[2], label[1])):
        px, py = (v * to_points for v in ax.transData.transform((x, y)))
        left, width, dy = px + 5, char * len(text), 4.0
        while any(abs(py + dy - b) < height and left < x0 + w and x0 < left + width for x0, b, w in placed):
            dy += height
        placed.append((left, py + dy, width))
        arrow = {"arrowstyle": "-", "color": "0.6", "linewidth": 0.5} if dy > 4 else None
        ax.annotate(text, (x, y), xytext=(5, dy), textcoords="offset points", fontsize=fontsize, color="0.3",
                    arrowprops=arrow)  # fmt: skip


def plot_accuracy_vs_tokens(results: list[dict[str, Any]], path: Path, title: str = _PLOT_TITLE) -> Path:
    """Plot pass@1 (%) against mean completion tokens into the PNG ``path``; return ``path``.

    Colour by task, marker and label by model (by run · model when results carry ``run``), each task's points joined
    in token order (with a thinking-budget sweep: each task's and model's points, labelled with their budget); log-x
    when the tokens span more than 10x. Results without both numbers are left out.
    """
    points = [r for r in results if r.get("pass@1") is not None and r.get("mean_completion_tokens") is not None]
    fig = Figure(figsize=(8, 5), dpi=120)
    ax = fig.add_subplot()
    tasks = list(dict.fromkeys(r["task"] for r in points))
    series = list(dict.fromkeys(map(_series, points)))
    colours = {task: f"C{i % 10}" for i, task in enumerate(tasks)}
    markers = {name: _MARKERS[i % len(_MARKERS)] for i, name in enumerate(series)}
    swept = any("thinking_budget" in r for r in points)
    groups = [(t, s) for t in tasks for s in series] if swept else [(t, None) for t in tasks]
    labels: list[tuple[str, float, float]] = []
    for task, name in groups:
        mine = sorted((r for r in points if r["task"] == task and name in (None, _series(r))),
                      key=lambda r: r["mean_completion_tokens"])  # fmt: skip
        xs = [r["mean_completion_tokens"] for r in mine]
        ax.plot(xs, [100 * r["pass@1"] for r in mine], color=colours[task], linewidth=0.8, alpha=0.6)
        for r, x in zip(mine, xs, strict=True):
            y = 100 * r["pass@1"]
            ax.scatter(x, y, color=colours[task], marker=markers[_series(r)], s=60, zorder=3)
            labels.append((_point_label(r), x, y))
    tokens = [r["mean_completion_tokens"] for r in points]
    if tokens and min(tokens) > 0 and max(tokens) > 10 * min(tokens):
        ax.set_xscale("log")
    annotate_apart(ax, labels)
    if not points:
        ax.text(0.5, 0.5, "no results to plot", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("mean completion tokens" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if points:
        task_handles = [Line2D([], [], color=colours[t], marker="o", linewidth=0.8, label=t) for t in tasks]
        model_handles = [Line2D([], [], color="0.4", marker=markers[s], linestyle="", label=s) for s in series]
        by_task = ax.legend(handles=task_handles, title="task", loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
        ax.add_artist(by_task)
        model_title = "run · model" if any("run" in r for r in points) else "model"
        ax.legend(handles=model_handles, title=model_title, loc="lower left", bbox_to_anchor=(1.02, 0), fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_accuracy_vs_budget(results: list[dict[str, Any]], path: Path, title: str = _BUDGET_TITLE) -> Path:
    """Plot pass@1 (%) against the thinking budget (log2 x) into the PNG ``path``: a line per task and model of a
    sweep, and a dashed level per task and model evaluated without a budget (e.g. a short model); return ``path``."""
    points = [r for r in results if r.get("pass@1") is not None]
    fig = Figure(figsize=(8, 5), dpi=120)
    ax = fig.add_subplot()
    tasks = list(dict.fromkeys(r["task"] for r in points))
    series = list(dict.fromkeys(map(_series, points)))
    colours = {task: f"C{i % 10}" for i, task in enumerate(tasks)}
    styles = {name: (_MARKERS[i % len(_MARKERS)], ("-", "--", ":", "-.")[i % 4]) for i, name in enumerate(series)}
    handles = []
    for task in tasks:
        for name in series:
            mine = [r for r in points if r["task"] == task and _series(r) == name]
            swept = sorted((r for r in mine if r.get("thinking_budget") is not None),
                           key=lambda r: r["thinking_budget"])  # fmt: skip
            marker, line = styles[name]
            label = f"{task} · {name}"
            if swept:
                xs = [max(r["thinking_budget"], 1) for r in swept]
                ax.plot(xs, [100 * r["pass@1"] for r in swept], color=colours[task], marker=marker, linestyle=line)
                handles.append(Line2D([], [], color=colours[task], marker=marker, linestyle=line, label=label))
            for r in (r for r in mine if r.get("thinking_budget") is None):
                ax.axhline(100 * r["pass@1"], color=colours[task], linestyle=":", linewidth=1)
                handles.append(Line2D([], [], color=colours[task], linestyle=":", label=f"{label} (no budget)"))
    if any(r.get("thinking_budget") is not None for r in points):
        ax.set_xscale("log", base=2)
    else:
        ax.text(0.5, 0.5, "no thinking-budget sweep to plot", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("thinking budget (tokens, log scale)")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def _plots(results: list[dict[str, Any]], out_dir: Path, stem: str, suffix: str = "") -> list[Path]:
    """The accuracy-against-tokens plot, and with a thinking-budget sweep the accuracy-against-budget one."""
    plots = [plot_accuracy_vs_tokens(results, out_dir / f"{stem}.png", title=_PLOT_TITLE + suffix)]
    if any("thinking_budget" in r for r in results):
        plots.append(plot_accuracy_vs_budget(results, out_dir / f"{stem}_budget.png", title=_BUDGET_TITLE + suffix))
    return plots


def _images(plots: list[Path]) -> list[str]:
    return [f"![{_PLOT_TITLE if i == 0 else _BUDGET_TITLE}]({p.name})" for i, p in enumerate(plots)]


def _format_info(key: str, value: Any) -> str:
    if key == "wall_s":
        return _duration(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _run_info_lines(run_info: dict[str, Any]) -> list[str]:
    """Markdown list items for ``run_info``: the known keys first, with readable names, then any others."""
    order = [*(k for k in _RUN_INFO if k in run_info), *(k for k in run_info if k not in _RUN_INFO)]
    return [f"- {_RUN_INFO.get(k, k)}: {_format_info(k, run_info[k])}" for k in order]


def render(out_dir: Path) -> tuple[Path, ...]:
    """Write ``results.md`` and ``accuracy_vs_tokens.png`` (with a thinking-budget sweep also
    ``accuracy_vs_tokens_budget.png``) into ``out_dir`` from its ``summary.json``; returns their paths."""
    summary = load_summary(out_dir)
    plots = _plots(summary["results"], out_dir, "accuracy_vs_tokens")
    lines = ["# Evaluation results", "", *_run_info_lines(summary["run"]), ""]
    lines += [markdown_table(summary["results"]), *_images(plots), ""]
    md = out_dir / "results.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return md, *plots


def _labels(run_dirs: list[Path]) -> list[str]:
    """Each run's directory name, or its path where names repeat."""
    names = [d.resolve().name for d in run_dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]


def compare(run_dirs: list[Path], out_dir: Path) -> tuple[Path, ...]:
    """Write ``comparison.md`` and ``comparison.png`` (and ``comparison_budget.png`` when a run swept the thinking
    budget) into ``out_dir`` comparing the runs in ``run_dirs``; returns their paths."""
    if not run_dirs:
        raise ValueError("no runs to compare")
    summaries = [load_summary(d) for d in run_dirs]
    labels = _labels(run_dirs)
    results = [{**r, "run": label} for label, s in zip(labels, summaries, strict=True) for r in s["results"]]
    plots = _plots(results, out_dir, "comparison", ", by run")
    lines = ["# Run comparison", ""]
    for label, run_dir, summary in zip(labels, run_dirs, summaries, strict=True):
        lines += [f"## {label}", "", f"- directory: `{run_dir}`", *_run_info_lines(summary["run"]), ""]
    lines += ["## Results", "", markdown_table(results), *_images(plots), ""]
    md = out_dir / "comparison.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return md, *plots
