"""evalsuite.report: summary.json, the Markdown table, the accuracy-versus-tokens plot, render and compare."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from k15.evalsuite.report import compare, load_summary, markdown_table, plot_accuracy_vs_tokens, render, write_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_INFO = {
    "tasks": ["math500", "aime24"],
    "models": ["k15-long", "k15-short"],
    "samples": 4,
    "sampling": {"temperature": 1.0, "top_p": 0.95, "max_tokens": 32768},
    "wall_s": 3725.0,
}


def result(task: str, model: str, pass1: float | None, tokens: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "task": task, "model": model, "n_items": 10, "n_samples": 40, "samples_per_item": 4, "pass@1": pass1,
        "pass@2": pass1, "pass@4": pass1, "maj@n": 0.5, "mean_completion_tokens": tokens,
        "median_completion_tokens": tokens, "mean_reasoning_tokens": 2680 / 7, "median_reasoning_tokens": 300,
        "truncation_rate": 1 / 7, "errors": 1, "wall_s": 12.5, **extra,
    }  # fmt: skip


RESULTS = [
    result("math500", "k15-long", 0.375, 3100 / 7),
    result("math500", "k15-short", 0.3, 250.0),
    result("aime24", "k15-long", 0.2, 9000.0),
    result("aime24", "k15-short", 0.1, 1500.0),
]


def assert_png(path: Path, min_bytes: int = 5000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 400 and image.height > 300


def test_write_summary_is_atomic_and_parses(tmp_path: Path) -> None:
    out = tmp_path / "run"
    path = write_summary(out, RUN_INFO, RESULTS)
    assert path == out / "summary.json"
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # no temporary file left
    assert json.loads(path.read_text(encoding="utf-8")) == {"run": RUN_INFO, "results": RESULTS}
    assert load_summary(out) == {"run": RUN_INFO, "results": RESULTS}


def test_write_summary_failure_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_summary(tmp_path, RUN_INFO, RESULTS)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_summary(tmp_path, {"started": object()}, RESULTS)  # not JSON-serialisable halfway through
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_write_summary_needs_task_and_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'task' or 'model'"):
        write_summary(tmp_path, RUN_INFO, [{"task": "math500", "pass@1": 0.5}])
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize(
    "content",
    [None, "{not json", "[1, 2]", '{"run": {}, "results": [{"task": "math500"}]}', '{"results": []}', b"\xff\xfe"],
)
def test_load_summary_names_the_file_when_missing_or_broken(tmp_path: Path, content: str | bytes | None) -> None:
    if isinstance(content, str):
        (tmp_path / "summary.json").write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        (tmp_path / "summary.json").write_bytes(content)
    with pytest.raises(ValueError) as error:
        load_summary(tmp_path)
    assert str(tmp_path / "summary.json") in str(error.value)


def test_markdown_table_formats_every_column() -> None:
    rows = [
        result("math500", "k15-long", 0.375, 3100 / 7),
        result("aime|24", "k15-short", None, None, errors=0, wall_s=125.0, truncation_rate=0.0),
    ]
    table = markdown_table(rows).splitlines()
    assert table[0] == (
        "| task | model | pass@1 | maj@n | completion tok (mean) | completion tok (median) | reasoning tok (mean) "
        "| reasoning tok (median) | truncated | errors | wall time |"
    )
    assert table[1] == "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    assert table[2] == "| math500 | k15-long | 37.5% | 50.0% | 443 | 443 | 383 | 300 | 14.3% | 1 | 12.5 s |"
    assert table[3] == "| aime\\|24 | k15-short | – | 50.0% | – | – | 383 | 300 | 0.0% | 0 | 2m 05s |"
    assert len(table) == 4


def test_markdown_table_run_column_and_long_durations() -> None:
    table = markdown_table([result("math500", "m", 0.5, 12345.0, wall_s=3725.0)], run_label="base").splitlines()
    assert table[0].startswith("| run | task | model | pass@1 |")
    assert table[1].startswith("|---|---|---|--:|")
    assert table[2] == "| base | math500 | m | 50.0% | 50.0% | 12,345 | 12,345 | 383 | 300 | 14.3% | 1 | 1h 02m |"
    own = markdown_table([result("math500", "m", 0.5, 1.0, run="long2short")], run_label="base")
    assert own.splitlines()[2].startswith("| long2short | math500 | m |")
    assert markdown_table([]).count("\n") == 2  # just the header


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the plots save, for a look at their axes."""
    saved: list[Figure] = []
    savefig = Figure.savefig

    def record(self: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def test_plot_single_point(tmp_path: Path, figures: list[Figure]) -> None:
    path = plot_accuracy_vs_tokens(RESULTS[:1], tmp_path / "one.png")
    assert path == tmp_path / "one.png"
    assert_png(path)
    (ax,) = figures[0].axes
    assert ax.get_xscale() == "linear"
    assert "pass@1" in ax.get_ylabel() and "tokens" in ax.get_xlabel()
    (points,) = ax.collections
    assert points.get_offsets().tolist() == [pytest.approx([3100 / 7, 37.5])]
    assert ax.get_legend() is not None


def test_plot_six_points_joins_each_task_and_uses_log_x(tmp_path: Path, figures: list[Figure]) -> None:
    six = [*RESULTS, result("gsm8k", "k15-long", 0.85, 800.0), result("gsm8k", "k15-short", 0.9, 120.0)]
    assert_png(plot_accuracy_vs_tokens(six, tmp_path / "six.png", title="long2short"))
    (ax,) = figures[0].axes
    assert ax.get_title() == "long2short"
    assert ax.get_xscale() == "log"  # 120 to 9000 tokens
    assert len(ax.collections) == 6
    lines = {tuple(line.get_xdata()): line.get_ydata().tolist() for line in ax.lines}
    assert lines == {(120.0, 800.0): [90.0, 85.0], (250.0, 3100 / 7): [30.0, 37.5], (1500.0, 9000.0): [10.0, 20.0]}
    colours = {tuple(c.get_facecolor()[0]) for c in ax.collections}
    markers = {c.get_paths()[0].vertices.tobytes() for c in ax.collections}
    assert len(colours) == 3 and len(markers) == 2  # colour by task, marker by model


def test_plot_without_plottable_points_still_writes_a_png(tmp_path: Path) -> None:
    assert_png(plot_accuracy_vs_tokens([result("math500", "m", None, None)], tmp_path / "none.png"), min_bytes=1000)


def test_render_writes_results_and_plot(tmp_path: Path) -> None:
    write_summary(tmp_path, RUN_INFO, RESULTS)
    md, png = render(tmp_path)
    assert (md, png) == (tmp_path / "results.md", tmp_path / "accuracy_vs_tokens.png")
    assert_png(png)
    text = md.read_text(encoding="utf-8")
    assert text.startswith("# ")
    for line in [
        "- tasks: math500, aime24",
        "- models: k15-long, k15-short",
        "- samples per item: 4",
        "- sampling: temperature=1.0, top_p=0.95, max_tokens=32768",
        "- wall time: 1h 02m",
        "| math500 | k15-long | 37.5% | 50.0% | 443 | 443 | 383 | 300 | 14.3% | 1 | 12.5 s |",
        "| aime24 | k15-short | 10.0% |",
        "](accuracy_vs_tokens.png)",
    ]:
        assert line in text, line
    assert "| run |" not in text


def test_render_without_summary_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "summary.json"))):
        render(tmp_path)
    assert not (tmp_path / "results.md").exists()


def test_compare_labels_rows_and_points_by_run(tmp_path: Path, figures: list[Figure]) -> None:
    base, short = tmp_path / "base", tmp_path / "long2short"
    write_summary(base, RUN_INFO, RESULTS[:2])
    write_summary(short, {**RUN_INFO, "samples": 8}, [result("math500", "k15-long", 0.35, 1200.0)])
    md, png = compare([base, short], tmp_path / "cmp")
    assert (md, png) == (tmp_path / "cmp" / "comparison.md", tmp_path / "cmp" / "comparison.png")
    assert_png(png)
    text = md.read_text(encoding="utf-8")
    for line in [
        "## base",
        "## long2short",
        f"- directory: `{base}`",
        "- samples per item: 8",
        "| run | task | model |",
        "| base | math500 | k15-long | 37.5% |",
        "| base | math500 | k15-short | 30.0% |",
        "| long2short | math500 | k15-long | 35.0% |",
        "](comparison.png)",
    ]:
        assert line in text, line
    labels = {text.get_text() for text in figures[0].axes[0].texts}
    assert labels == {"base · k15-long", "base · k15-short", "long2short · k15-long"}


def test_compare_same_names_use_paths(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "out", tmp_path / "b" / "out"
    write_summary(first, RUN_INFO, RESULTS[:1])
    write_summary(second, RUN_INFO, RESULTS[:1])
    text = compare([first, second], tmp_path)[0].read_text(encoding="utf-8")
    assert f"| {first} | math500 |" in text and f"| {second} | math500 |" in text


def test_compare_broken_or_missing_run_names_the_dir(tmp_path: Path) -> None:
    good, broken, missing = tmp_path / "good", tmp_path / "broken", tmp_path / "missing"
    write_summary(good, RUN_INFO, RESULTS)
    broken.mkdir()
    (broken / "summary.json").write_text('{"run": {}, "results": "oops"}', encoding="utf-8")
    for bad in (broken, missing):
        with pytest.raises(ValueError, match=re.escape(str(bad))):
            compare([good, bad], tmp_path / "cmp")
    with pytest.raises(ValueError, match="no runs"):
        compare([], tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()


def test_plot_labels_of_close_points_do_not_overlap(tmp_path: Path, figures: list[Figure]) -> None:
    """The long2short report's case: three of five models within a few tokens and points of one another."""
    points = {"long-cot": (0.55, 280.0), "merge": (0.02, 500.0), "shortest": (0.52, 140.0), "dpo": (0.525, 143.0),
              "rl": (0.518, 141.0)}  # fmt: skip
    models = list(points)
    close = [result("countdown", m, accuracy, tokens) for m, (accuracy, tokens) in points.items()]
    assert_png(plot_accuracy_vs_tokens(close, tmp_path / "close.png"))
    (ax,) = figures[0].axes
    renderer = FigureCanvasAgg(figures[0]).get_renderer()
    boxes = {text.get_text(): Text.get_window_extent(text, renderer) for text in ax.texts}  # the text, no arrow
    assert set(boxes) == set(models)
    overlapping = [(a, b) for a in boxes for b in boxes if a < b and boxes[a].overlaps(boxes[b])]
    assert not overlapping, overlapping
