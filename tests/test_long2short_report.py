"""The token-efficiency report's logic (``k15 report long2short``): checkpoint discovery, ratios, the target and the
choice of the best method, against hand-made results. The report end to end runs in tests/test_demo.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from k15.checkpoint import CheckpointInfo, Kind, write_info
from k15.evalsuite.efficiency import LONG, EfficiencyConfig, compare, find_long2short, long_model, table
from tests.conftest import run_k15


def result(model: str, task: str, accuracy: float, tokens: float) -> dict:
    method = "long-cot" if model == LONG else model
    return {"model": model, "method": method, "task": task, "pass@1": accuracy, "mean_completion_tokens": tokens}


def fake_checkpoint(
    path: Path, kind: Kind, method: str | None = None, base: str | None = None, iteration: int | None = None
) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    write_info(path, CheckpointInfo(kind=kind, name=path.name, method=method, base_model=base, iteration=iteration))
    return path


def test_ratios_target_and_best_method() -> None:
    cfg = EfficiencyConfig(run_dir=".")
    results = [
        result(LONG, "arith", 0.40, 100), result(LONG, "math500", 0.10, 300),
        result("merge", "arith", 0.20, 30),      # short, but loses half the accuracy
        result("shortest", "arith", 0.39, 48),   # 0.975 of the accuracy with 0.48 of the tokens: meets the target
        result("dpo", "arith", 0.41, 50),        # more accurate, exactly half the tokens: meets it too
        result("rl", "arith", 0.38, 70),         # keeps the accuracy (0.95) but not short enough
        result("dpo", "math500", 0.05, 100),
    ]  # fmt: skip
    report = compare(cfg, results)
    rows = {(r["model"], r["task"]): r for r in report["rows"]}
    assert rows[("shortest", "arith")]["accuracy_ratio"] == pytest.approx(0.975)
    assert rows[("shortest", "arith")]["token_ratio"] == pytest.approx(0.48)
    assert rows[("dpo", "math500")]["token_ratio"] == pytest.approx(1 / 3)
    assert not rows[("dpo", "math500")]["meets_target"], "the target is judged on the demo task only"
    assert report["met_by"] == ["shortest", "dpo"]
    assert report["best"] == "dpo", "among those meeting the target: the most accurate"
    text = table(report)
    assert "| shortest | arith | 39.0% | 48 | 0.97 | 0.48 | met |" in text
    assert "| rl | arith | 38.0% | 70 | 0.95 | 0.70 | missed |" in text


def test_best_when_no_method_meets_the_target() -> None:
    cfg = EfficiencyConfig(run_dir=".")
    keeping = [result(LONG, "arith", 0.4, 100), result("rl", "arith", 0.39, 70), result("dpo", "arith", 0.38, 60),
               result("merge", "arith", 0.1, 20)]  # fmt: skip
    assert compare(cfg, keeping)["best"] == "dpo", "fewest tokens among those keeping 95% of the accuracy"
    losing = [result(LONG, "arith", 0.4, 100), result("rl", "arith", 0.30, 70), result("merge", "arith", 0.1, 20)]
    report = compare(cfg, losing)
    assert report["best"] == "rl" and report["met_by"] == []
    zero = compare(cfg, [result(LONG, "arith", 0.0, 100), result("rl", "arith", 0.0, 40)])
    assert zero["rows"][1]["accuracy_ratio"] is None and not zero["rows"][1]["meets_target"]


def test_discovery_skips_intermediate_checkpoints_and_finds_the_long_model(tmp_path: Path) -> None:
    long = fake_checkpoint(tmp_path / "rl" / "final", Kind.long_cot)
    fake_checkpoint(tmp_path / "long2short" / "merge" / "final", Kind.long2short, "merge", str(long))
    fake_checkpoint(tmp_path / "long2short" / "rl" / "final", Kind.long2short, "rl", str(long))
    fake_checkpoint(tmp_path / "long2short" / "rl" / "checkpoints" / "iter-3", Kind.long2short, "rl", str(long))
    found = find_long2short(tmp_path)
    assert [(m.label, m.path) for m in found] == [("merge", tmp_path / "long2short" / "merge" / "final"),
                                                  ("rl", tmp_path / "long2short" / "rl" / "final")]  # fmt: skip
    assert long_model(EfficiencyConfig(run_dir=str(tmp_path)), found) == long
    fake_checkpoint(tmp_path / "other" / "final", Kind.long2short, "rl", "/elsewhere")
    found = find_long2short(tmp_path)
    assert {m.label for m in found} == {"merge", "long2short/rl/final", "other/final"}, "same method: labelled by path"
    with pytest.raises(ValueError, match="pass --long"):
        long_model(EfficiencyConfig(run_dir=str(tmp_path)), found)


def test_intermediate_checkpoints_let_the_picker_stop_long2short_rl_early(tmp_path: Path) -> None:
    """With ``intermediate``, the checkpoints long2short RL saved on the way are evaluated as METHOD@N, and the
    picker can take one of them: here (the eighth measurement of docs/demo-task.md) iteration 8 keeps 0.95 of the
    accuracy at 0.59 of the tokens, where the last checkpoint keeps only 0.93 and shortest rejection sampling
    saves only 5% of the tokens."""
    long = fake_checkpoint(tmp_path / "rl" / "final", Kind.long_cot)
    fake_checkpoint(tmp_path / "long2short" / "shortest" / "final", Kind.long2short, "shortest", str(long))
    fake_checkpoint(tmp_path / "long2short" / "rl" / "final", Kind.long2short, "rl", str(long), iteration=12)
    for step in (4, 8):
        fake_checkpoint(tmp_path / "long2short" / "rl" / "checkpoints" / f"iter-{step:06d}", Kind.long2short, "rl",
                        str(long), iteration=step)  # fmt: skip
    assert [m.label for m in find_long2short(tmp_path)] == ["rl", "shortest"]
    found = find_long2short(tmp_path, intermediate=True)
    assert [(m.label, m.method) for m in found] == [("rl@4", "rl"), ("rl@8", "rl"), ("rl", "rl"),
                                                    ("shortest", "shortest")]  # fmt: skip
    cfg = EfficiencyConfig(run_dir=str(tmp_path), intermediate=True, target_task="countdown")
    results = [result(LONG, "countdown", 0.44, 493), result("shortest", "countdown", 0.44, 468),
               result("rl@4", "countdown", 0.43, 380), result("rl@8", "countdown", 0.42, 292),
               result("rl", "countdown", 0.41, 234)]  # fmt: skip
    report = compare(cfg, results)
    assert report["best"] == "rl@8" and report["met_by"] == []
    assert "| rl@8 | countdown | 42.0% | 292 | 0.95 | 0.59 | missed |" in table(report)
    results[3] = result("rl@8", "countdown", 0.43, 240)  # 0.98 of the accuracy at 0.49 of the tokens
    assert compare(cfg, results)["met_by"] == ["rl@8"]


def test_report_command_errors_are_one_line(tmp_path: Path) -> None:
    result = run_k15("report", "long2short", str(tmp_path / "missing"))
    assert result.returncode == 2 and "not a directory" in result.stderr and "Traceback" not in result.stderr
    result = run_k15("report", "long2short", str(tmp_path))
    assert result.returncode == 2 and "no long2short checkpoint" in result.stderr
    result = run_k15("report", "long2short", str(tmp_path), "--set", "samples=0")
    assert result.returncode == 2 and "samples" in result.stderr and "Traceback" not in result.stderr
