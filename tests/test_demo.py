"""``k15 demo`` (the main job of ``make demo``) end to end at toy scale on the tiny model: every stage for real —
DeepSpeed SFT and RL, vLLM rollouts and evaluations, a long2short merge, the token-efficiency report, ``k15 serve``
of the chosen pair and ``evalsuite run`` against it; then a rerun of the training stages is a no-op."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED_DATA, run_k15

pytestmark = pytest.mark.vllm
ENGINE = {"enforce_eager": True, "gpu_memory_utilization": 0.1, "max_model_len": 512}


def toy_config(path: Path, model: Path, out: Path) -> Path:
    config = {
        "name": "toy-demo", "model": str(model), "output_dir": str(out),
        "demo_data": {"task": "countdown", "levels": [1], "train": 40, "heldout": 8, "sft": 16},
        "sft": {"epochs": 1, "batch_size": 8, "max_length": 256, "deepspeed": {"lr": 1e-3, "micro_batch_size": 8}},
        "rl": {"iterations": 2, "prompts_per_iteration": 2, "save_every": 1,
               "rollout": {"k": 2, "max_tokens": 32, "segment_tokens": 32, "engine": ENGINE},
               "deepspeed": {"lr": 1e-4, "micro_batch_size": 4}},
        "eval": {"problems": 4, "samples": 1, "max_tokens": 32, "thinking_budget": 16},
        "long2short": {"methods": ["merge"], "merge": {"weights": [0.5, 0.5]}},
        "report": {"tasks": {"countdown": 4, "math500": 2}, "max_tokens": 32, "engine": ENGINE},
        "final_eval": {"tasks": {"countdown": 2, "math500": 1, "aime": 1}, "max_tokens_long": 32, "max_tokens_short": 32},
        "eval_data_dir": str(SHARED_DATA) if SHARED_DATA.is_dir() else None,
        "serve": {"port": 0, "engine": ENGINE},
        "ui": False,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def test_demo_runs_every_stage_and_reuses_them(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = toy_config(tmp_path / "demo.yaml", tiny_model, out)
    result = run_k15("demo", "--config", str(config), timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    heldout = json.loads((out / "report.json").read_text())
    assert list(heldout["curve"]) == ["0", "1", "2"], "held-out accuracy of the warm-up model and every RL checkpoint"
    assert heldout["curve"]["0"] == heldout["warmup"]["accuracy"] and heldout["curve"]["2"] == heldout["rl"]["accuracy"]
    assert (out / "rl-curve.png").stat().st_size > 0
    report = json.loads((out / "long2short-report" / "report.json").read_text())
    assert report["best"] == "merge" and report["long"] == str(out / "rl" / "final")
    tasks = {"countdown", "math500"} if SHARED_DATA.is_dir() else {"countdown"}
    assert {(r["model"], r["task"]) for r in report["rows"]} == {(m, t) for m in ("long-cot", "merge") for t in tasks}
    assert (out / "long2short-report" / "figure7.png").stat().st_size > 0
    served = json.loads((out / "evals" / "summary.json").read_text())["results"]
    assert {r["model"] for r in served} == {"k15-long", "k15-short"}
    assert {r["task"] for r in served} == ({"aime", "math500", "countdown"} if SHARED_DATA.is_dir() else {"countdown"})
    timings = json.loads((out / "timings.json").read_text())
    assert {"warm-up SFT", "RL", "held-out evaluation", "token-efficiency report"} <= timings.keys()
    closing = (
        "| model | held-out accuracy (countdown) | mean tokens | tokens ÷ long |",
        "| k15-long (long-CoT RL) |",
        "| k15-short (merge) |",
    )
    for text in ("| stage | wall time |", "accuracy ÷ long", "long2short best: merge", *closing):
        assert text in result.stdout, text
    if not SHARED_DATA.is_dir():
        assert "math500 skipped" in result.stdout, "a task without data is named and skipped"

    # A rerun reuses every trained stage and evaluation (no engine starts until serving).
    from k15.app import pipeline
    from k15.app.demo import DemoConfig
    from k15.config import load_config
    from k15.evalsuite import efficiency

    cfg = load_config(DemoConfig, config)
    assert pipeline.run(cfg)["rl"] == json.loads((out / "report.json").read_text())["rl"]
    assert pipeline.run_long2short(cfg) == {"merge": out / "long2short" / "merge" / "final"}
    limits = {t: n for t, n in cfg.report.tasks.items() if t in tasks}
    again = efficiency.run(efficiency.EfficiencyConfig(run_dir=str(out), long=report["long"], tasks=limits,
                                                       data_dir=cfg.eval_data_dir, max_tokens=32, target_task="countdown",
                                                       demo_data=str(cfg.data_dir())))  # fmt: skip
    assert again["rows"] == report["rows"]
