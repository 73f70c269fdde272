"""The trainers end to end on the tiny model: real DeepSpeed (CPU accelerator, gloo) and the real vLLM engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from k15.train.runtime.metrics_log import read_metrics
from tests.conftest import REPO, run_k15, wait_session_gone

ENGINE = {"enforce_eager": True, "gpu_memory_utilization": 0.1, "max_model_len": 512}


@pytest.fixture(scope="session")
def tiny_sft(tiny_model: Path, arith: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model after ``k15 train sft`` on verified demo traces (so it stops and answers in the format)."""
    out = tmp_path_factory.mktemp("sft")
    result = run_k15("train", "sft", "--set", f"model={tiny_model}", "--set", f"data={arith / 'sft.jsonl'}",
                     "--set", f"output_dir={out}", "--set", "epochs=3", "--set", "batch_size=16",
                     "--set", "deepspeed.lr=3e-3", "--set", "deepspeed.micro_batch_size=16",
                     "--set", "max_length=256", "--set", "state_every=6", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint" in result.stdout
    return out


def rl_config(path: Path, model: Path, data: Path, out: Path, **changes: object) -> Path:
    config = {
        "model": str(model), "data": {"path": str(data)}, "output_dir": str(out), "iterations": 1,
        "prompts_per_iteration": 4, "tau": 0.1, "save_every": 1,
        "rollout": {"k": 4, "max_tokens": 96, "temperature": 1.0, "engine": ENGINE},
        "deepspeed": {"lr": 1e-3, "micro_batch_size": 8},
        "prompt_sampling": {"curriculum": True, "prioritized": True},
    }  # fmt: skip
    config.update(changes)
    path.write_text(yaml.safe_dump(config))
    return path


def test_sft_learns_the_format_and_writes_a_servable_checkpoint(tiny_sft: Path) -> None:
    from k15.checkpoint import read_info
    from k15.models import resolve_model

    losses = [row["loss"] for row in read_metrics(tiny_sft)]
    assert len(losses) == 18  # 96 examples / 16 per step × 3 epochs
    assert losses[-1] < 0.5 * losses[0]
    final = tiny_sft / "final"
    info = read_info(final)
    assert info is not None and info.kind == "long-cot" and info.method == "sft-warmup" and info.iteration == 18
    assert resolve_model(str(final)) == final
    from transformers import AutoTokenizer

    from k15.chat import K15_CHAT_TEMPLATE

    assert AutoTokenizer.from_pretrained(final).chat_template == K15_CHAT_TEMPLATE  # the template travels with it


def test_one_rl_iteration_changes_the_weights_and_vllm_samples_from_them(
    tiny_sft: Path, arith: Path, tmp_path: Path
) -> None:
    config = rl_config(tmp_path / "rl.yaml", tiny_sft / "final", arith / "train.jsonl", tmp_path / "run")
    result = subprocess.run([sys.executable, str(REPO / "tests" / "rl_probe.py"), str(config)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stdout[-1000:] + result.stderr[-3000:]
    probe = json.loads(next(line for line in reversed(result.stdout.splitlines()) if line.startswith('{"moved"')))
    metrics = probe["metrics"]
    assert metrics["samples_trained"] == 16 and metrics["grad_norm"] > 0
    assert probe["moved"] > 1e-4  # the optimizer step changed the weights
    assert probe["vllm_change"] > 1e-3  # vLLM now scores the probe differently …
    assert probe["vllm_vs_trainer"] < 0.05  # … exactly as the trainer's new weights do (bf16 tolerance)
    for key in ("reward", "accuracy", "length_reward", "response_len_mean", "response_len_max", "sq_log_ratio",
                "entropy", "rollout_tokens_per_s", "train_tokens_per_s", "sync_s"):  # fmt: skip
        assert key in metrics


def _start_rl(config: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "k15", "train", "rl", "--config", str(config)], cwd=REPO,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})  # fmt: skip


def test_kill_mid_iteration_then_resume_loses_and_repeats_nothing(tiny_sft: Path, arith: Path, tmp_path: Path) -> None:
    """SIGKILL of the trainer's main process inside iteration 2's weight sync (a failpoint, as the OOM killer would
    kill it): no process of its outlives it (the engine runs in it on CPU; a spawned one is
    tests/test_weight_sync.py's), the rerun continues after iteration 1, and the final weights and metrics equal an
    unbroken run's."""
    import torch
    from safetensors.torch import load_file

    changes = {"iterations": 3, "rollout": {"k": 4, "max_tokens": 64, "segment_tokens": 32, "engine": ENGINE},
               "tensorboard": False}  # fmt: skip
    reference = rl_config(tmp_path / "ref.yaml", tiny_sft / "final", arith / "train.jsonl", tmp_path / "ref", **changes)
    killed = rl_config(tmp_path / "kill.yaml", tiny_sft / "final", arith / "train.jsonl", tmp_path / "run", **changes)
    log = tmp_path / "run.log"
    process = _start_rl(killed, log, env={"K15_FAILPOINT": "weight-sync:2"})
    try:
        assert process.wait(timeout=600) == -signal.SIGKILL, log.read_text()[-3000:]
        assert not wait_session_gone(process.pid), "engine processes outlived the trainer"
    finally:
        subprocess.run(["pkill", "-9", "-s", str(process.pid)], check=False)
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1]
    assert _start_rl(killed, log).wait(timeout=600) == 0, log.read_text()[-3000:]
    assert "resuming" in log.read_text() and "after iteration 1" in log.read_text()
    assert _start_rl(reference, tmp_path / "ref.log").wait(timeout=600) == 0
    resumed, unbroken = read_metrics(tmp_path / "run"), read_metrics(tmp_path / "ref")
    assert [r["step"] for r in resumed] == [1, 2, 3]
    for key in ("response_len_mean", "samples_trained", "trajectories_pending", "reward", "grad_norm"):
        assert [r[key] for r in resumed] == [r[key] for r in unbroken], key
    state = json.loads((tmp_path / "run" / "final" / "k15.json").read_text())
    assert state["iteration"] == 3
    mine, theirs = (load_file(str(d / "final" / "model.safetensors")) for d in (tmp_path / "run", tmp_path / "ref"))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_two_ranks_run_an_iteration_with_the_deepspeed_launcher(tiny_sft: Path, arith: Path, tmp_path: Path) -> None:
    """Two CPU ranks (gloo), each with its own vLLM engine and half of the prompts."""
    config = rl_config(tmp_path / "rl.yaml", tiny_sft / "final", arith / "train.jsonl", tmp_path / "run",
                       tensorboard=False)  # fmt: skip
    launcher = Path(sys.executable).parent / "deepspeed"
    result = subprocess.run(
        [str(launcher), "--num_gpus", "2", "--master_port", "29561", "--module", "k15", "train", "rl", "--config",
         str(config)], capture_output=True, text=True, timeout=900, cwd=REPO, env={**os.environ, "LOCAL_SIZE": "2"},
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (row,) = read_metrics(tmp_path / "run")
    assert row["samples_trained"] == 16  # 4 prompts × k=4, two per rank
    state = tmp_path / "run" / "state" / "step-0000001"
    assert sorted(p.name for p in state.glob("k15-rank*.pt")) == ["k15-rank0.pt", "k15-rank1.pt"]


def test_bad_config_and_bad_data_fail_before_any_work(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "p.jsonl"
    data.write_text('{"problem": "1+1?", "answer": "2"}\n{not json\n{"problem": "x", "answer": ""}\n')
    result = run_k15("train", "rl", "--set", f"data.path={data}", "--set", "iterations=0")
    assert result.returncode == 2 and "iterations" in result.stderr and "Traceback" not in result.stderr
    result = run_k15("train", "rl", "--set", f"data.path={tmp_path / 'missing.jsonl'}", "--set", f"model={tiny_model}")
    assert result.returncode == 2 and "missing.jsonl: not found" in result.stderr
    result = run_k15("train", "rl", "--set", "rollout.max_tokens=9000", "--set", f"data.path={data}")
    assert result.returncode == 2 and "max_model_len" in result.stderr
    result = run_k15("train", "sft", "--set", f"data={data}")  # no prompt/response rows at all
    assert result.returncode == 2 and "no usable example" in result.stderr
    assert f"{data}:2: skipped: not valid JSON" in result.stderr


def test_bad_rows_are_reported_with_file_and_line_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from k15.train.data.formats import load_problems

    data = tmp_path / "p.jsonl"
    data.write_text('{"problem": "1+1?", "answer": "2"}\n{not json\n{"problem": "x", "answer": ""}\n[1]\n'
                    '{"problem": "2+2?", "answer": "4", "grader": "nope"}\n{"problem": "3+3?", "answer": 6}\n')  # fmt: skip
    problems = load_problems(data)
    assert [p.record["answer"] for p in problems] == ["2", "6"]
    messages = caplog.text
    for line, why in ((2, "not valid JSON"), (3, "missing or empty 'answer'"), (4, "not a JSON object"),
                      (5, "unknown grader 'nope'")):  # fmt: skip
        assert f"{data}:{line}: skipped: {why}" in messages


def test_shipped_configs_are_valid() -> None:
    from k15.app.demo import DemoConfig
    from k15.app.pipeline import LongCoTPipelineConfig
    from k15.config import load_config
    from k15.train.long2short import METHODS as LONG2SHORT_METHODS
    from k15.train.rl.trainer import RLConfig

    demo = load_config(LongCoTPipelineConfig, REPO / "configs" / "demo-long-cot.yaml", [])
    assert demo.rl_config().model.endswith("sft/final")
    countdown = load_config(LongCoTPipelineConfig, REPO / "configs" / "demo-countdown.yaml", [])
    assert (countdown.demo_data.task, countdown.demo_data.levels) == ("countdown", [1, 2])
    make_demo = load_config(DemoConfig, REPO / "configs" / "demo.yaml", [])
    assert make_demo.demo_data.task == "countdown" and set(make_demo.long2short.methods) == set(LONG2SHORT_METHODS)
    for gpu in sorted((REPO / "configs").glob("gpu-*rl*.yaml")):
        load_config(RLConfig, gpu, [])


CODE_PROBLEMS = [
    {"id": "add", "problem": "Write `add(a, b)` returning a + b.", "entry_point": "add",
     "test": "def check(f):\n    assert f(2, 3) == 5\n", "solution": "def add(a, b):\n    return a + b"},
    {"id": "rev", "problem": "Write `rev(s)` returning s reversed.", "entry_point": "rev",
     "test": "def check(f):\n    assert f('ab') == 'ba'\n", "solution": "def rev(s):\n    return s[::-1]"},
    {"id": "top", "problem": "Write `top(xs)` returning the largest item.", "entry_point": "top",
     "test": "def check(f):\n    assert f([1, 3, 2]) == 3\n", "solution": "def top(xs):\n    return max(xs)"},
    {"id": "even", "problem": "Assign the even numbers below 10 to a list `evens`.",
     "test": "assert evens == [0, 2, 4, 6, 8]\n", "solution": "evens = list(range(0, 10, 2))"},
]  # fmt: skip


def test_code_rl_iteration_rewards_by_the_sandbox(tiny_sft: Path, tmp_path: Path) -> None:
    """One RL iteration on code prompts (``grader: code``): real vLLM, real DeepSpeed, every finished response's
    code run in the real sandbox; a right solution through the trainer's reward path earns 1, a wrong one 0."""
    data = tmp_path / "code.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in CODE_PROBLEMS))
    config = rl_config(tmp_path / "rl.yaml", tiny_sft / "final", data, tmp_path / "run", tensorboard=False,
                       rollout={"k": 4, "max_tokens": 200, "temperature": 1.0, "engine": ENGINE},
                       prompt_sampling={"curriculum": False, "prioritized": False})  # fmt: skip
    spec = yaml.safe_load(config.read_text())
    spec["data"]["grader"] = "code"
    config.write_text(yaml.safe_dump(spec))
    result = subprocess.run([sys.executable, str(REPO / "tests" / "rl_probe.py"), str(config), "--code"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stdout[-1000:] + result.stderr[-3000:]
    probe = json.loads(next(line for line in reversed(result.stdout.splitlines()) if line.startswith('{"moved"')))
    assert probe["metrics"]["samples_trained"] == 16
    finished = 16 - probe["metrics"]["trajectories_pending"]
    ran = probe["sandbox_runs"][:-2]  # less the two probe answers
    assert 0 < len(ran) <= finished  # responses with code were run (empty or cut ones need no run)
    assert probe["right_rewarded"] is True and probe["wrong_rewarded"] is False
    assert probe["sandbox_runs"][-2:] == ["passed", "failed"]
