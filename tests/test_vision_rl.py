"""Vision RL (issue 14) on a tiny random Idefics3 VLM (tests/vlm.py): SFT on image traces, one RL iteration on image
prompts (real vLLM with images, real DeepSpeed), the log-prob agreement of vLLM and the trainer with images, the
vision tower frozen, resume, and the trainers without image support refusing image rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from k15.train.runtime.metrics_log import read_metrics
from tests.conftest import REPO, run_k15

pytestmark = pytest.mark.vllm

ENGINE = {"enforce_eager": True, "gpu_memory_utilization": 0.1, "max_model_len": 256}
QUESTION = "What color is the square? Answer 1 for red, 2 for blue."
COLORS = {"red": 1, "blue": 2}


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 images of a red or blue square (``img/N.png``), as an RL prompt set (``prompts.jsonl``, the answer the
    color's number), SFT traces that answer it (``sft.jsonl``, with 4 text rows among them) and DPO pairs."""
    root = tmp_path_factory.mktemp("vision-data")
    (root / "img").mkdir()
    prompts, sft = [], []
    for i in range(8):
        color = ("red", "blue")[i % 2]
        image = Image.new("RGB", (56, 56), "white")
        image.paste(Image.new("RGB", (24, 24), color), (4 + 3 * i, 20 - 2 * i))
        image.save(root / "img" / f"{i}.png")
        answer = COLORS[color]
        prompts.append({"id": f"square-{i}", "problem": QUESTION, "answer": str(answer), "images": [f"img/{i}.png"]})
        sft.append({"prompt": QUESTION, "response": f"The square is {color}.</think>\\boxed{{{answer}}}",
                    "images": [f"img/{i}.png"]})  # fmt: skip
    sft += [{"prompt": f"Say {w}.", "response": f"Saying it.</think>{w}"} for w in ("hi", "yes", "no", "ok")]
    write_rows(root / "prompts.jsonl", prompts)
    write_rows(root / "sft.jsonl", sft)
    write_rows(root / "pairs.jsonl", [{"prompt": QUESTION, "chosen": "\\boxed{1}", "rejected": "\\boxed{2}",
                                       "images": ["img/0.png"]}])  # fmt: skip
    return root


@pytest.fixture(scope="module")
def vlm_sft(tiny_vlm: Path, image_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny VLM after ``k15 train sft`` on the image traces (so it closes its thinking and answers)."""
    out = tmp_path_factory.mktemp("vlm-sft")
    result = run_k15("train", "sft", "--set", f"model={tiny_vlm}", "--set", f"data={image_data / 'sft.jsonl'}",
                     "--set", f"output_dir={out}", "--set", "epochs=10", "--set", "batch_size=4",
                     "--set", "deepspeed.lr=3e-3", "--set", "deepspeed.micro_batch_size=4",
                     "--set", "max_length=64", "--set", "tensorboard=false", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def rl_config(path: Path, model: Path, data: Path, out: Path, **changes: object) -> Path:
    config = {
        "model": str(model), "data": {"path": str(data), "prompt_template": "{problem}"}, "output_dir": str(out),
        "iterations": 1, "prompts_per_iteration": 4, "tau": 0.1, "save_every": 1, "tensorboard": False,
        "rollout": {"k": 4, "max_tokens": 24, "temperature": 1.0, "engine": ENGINE},
        "deepspeed": {"lr": 1e-3, "micro_batch_size": 16}, "prompt_sampling": {"curriculum": False},
    }  # fmt: skip
    config.update(changes)
    path.write_text(yaml.safe_dump(config))
    return path


def test_sft_on_image_traces_writes_a_servable_vision_checkpoint(vlm_sft: Path) -> None:
    from transformers import AutoProcessor, AutoTokenizer

    from k15.chat import k15_chat_template
    from k15.checkpoint import read_info

    losses = [row["loss"] for row in read_metrics(vlm_sft)]
    assert len(losses) == 30  # 12 examples / 4 per step × 10 epochs
    assert losses[-1] < 0.5 * losses[0]
    final = vlm_sft / "final"
    info = read_info(final)
    assert info is not None and info.kind == "long-cot" and info.method == "sft-warmup"
    template = k15_chat_template("<image>")  # the think template, image parts as the model's placeholder
    assert AutoProcessor.from_pretrained(final).chat_template == template  # what vLLM's server renders with
    assert AutoTokenizer.from_pretrained(final).chat_template == template


def test_k15_serve_hosts_the_trained_vision_checkpoint(vlm_sft: Path, image_data: Path) -> None:
    """The SFT checkpoint as it is behind ``k15 serve``: an image part becomes the model's image tokens, and the
    reasoning is split from the answer (the checkpoint thinks)."""
    import base64

    import httpx

    from tests.conftest import ServeProcess, engine_flags

    server = ServeProcess(["--long", str(vlm_sft / "final"), *engine_flags(max_model_len=256)])
    try:
        url = "data:image/png;base64," + base64.b64encode((image_data / "img" / "0.png").read_bytes()).decode()
        replies = [httpx.post(f"{server.base_url}/chat/completions", timeout=60, json={
            "model": "k15-long", "max_tokens": 24, "temperature": 0,
            "messages": [{"role": "user", "content": [*image, {"type": "text", "text": QUESTION}]}],
        }) for image in ([], [{"type": "image_url", "image_url": {"url": url}}])]  # fmt: skip
    finally:
        assert server.stop() == 0
    assert [r.status_code for r in replies] == [200, 200], replies[1].text
    text_only, with_image = (r.json() for r in replies)
    extra = with_image["usage"]["prompt_tokens"] - text_only["usage"]["prompt_tokens"]
    assert extra == 7, "the image becomes <fake><global-img> + 4 <image> tokens + <fake>, as in training"
    assert with_image["choices"][0]["message"]["reasoning_content"], "the think block is parsed"


def test_one_rl_iteration_on_image_prompts_agrees_with_vllm_and_syncs(
    vlm_sft: Path, image_data: Path, tmp_path: Path
) -> None:
    config = rl_config(tmp_path / "rl.yaml", vlm_sft / "final", image_data / "prompts.jsonl", tmp_path / "run")
    result = subprocess.run([sys.executable, str(REPO / "tests" / "vision_rl_probe.py"), str(config)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stdout[-1000:] + result.stderr[-3000:]
    probe = json.loads(next(line for line in reversed(result.stdout.splitlines()) if line.startswith('{"before')))
    print("vision log-prob agreement:", {k: probe[k] for k in ("before_diff", "after_diff", "tokens")})
    metrics = probe["metrics"]
    assert metrics["samples_trained"] == 16 and metrics["grad_norm"] > 0
    assert 0 < metrics["accuracy"] < 1, "the warm-up model answers some prompts right: a reward signal"
    assert probe["image_effect"] > 1e-4, "the trainer's log-probs depend on the image"
    assert probe["moved"]["text_model"] > 1e-4 and probe["moved"]["vision_model"] > 1e-5  # the tower trains too
    assert probe["vllm_change"] > 1e-3  # vLLM scores the same tokens differently after the sync …
    assert probe["before_diff"] < 0.02 and probe["after_diff"] < 0.02  # … as the trainer does, before and after


def test_frozen_vision_tower_resumes_after_a_kill_and_exports(vlm_sft: Path, image_data: Path, tmp_path: Path) -> None:
    """``freeze_vision_tower``: the tower's weights end as they started while the rest trains; a run SIGKILLed inside
    iteration 2's weight sync (a failpoint) resumes after iteration 1; the checkpoint keeps the processor."""
    import torch
    from safetensors.torch import load_file

    config = rl_config(tmp_path / "rl.yaml", vlm_sft / "final", image_data / "prompts.jsonl", tmp_path / "run",
                       freeze_vision_tower=True, iterations=2)  # fmt: skip
    command = [sys.executable, "-m", "k15", "train", "rl", "--config", str(config)]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO, start_new_session=True,
                            env={**os.environ, "K15_FAILPOINT": "weight-sync:2"})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "vision tower frozen" in killed.stdout
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1]
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout and "after iteration 1" in resumed.stdout
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2]
    final = tmp_path / "run" / "final"
    assert json.loads((final / "k15.json").read_text())["iteration"] == 2
    assert (final / "processor_config.json").is_file()
    start, end = (load_file(str(d / "model.safetensors")) for d in (vlm_sft / "final", final))
    vision = [k for k in start if ".vision_model." in k]
    assert vision and all(torch.equal(start[k], end[k]) for k in vision)
    assert any(not torch.equal(start[k], end[k]) for k in start if ".text_model." in k)


def test_trainers_without_image_support_refuse_image_rows(tiny_model: Path, tiny_vlm: Path, image_data: Path,
                                                          tmp_path: Path) -> None:  # fmt: skip
    from k15.train.data.formats import DataFileError
    from k15.train.long2short.dpo import DPOConfig, DPOTrainer

    pairs = image_data / "pairs.jsonl"
    with pytest.raises(DataFileError, match=r"pairs\.jsonl: 1 rows have images, and image rows are not supported by "
                       r"DPO \(train/long2short/dpo\.py\) yet"):  # fmt: skip
        DPOTrainer(DPOConfig(model=str(tiny_vlm), data=str(pairs), output_dir=str(tmp_path / "dpo")))
    shortest = run_k15("train", "long2short", "--method", "shortest", "--set", f"model={tiny_vlm}",
                       "--set", f"data.path={image_data / 'prompts.jsonl'}", "--set", f"output_dir={tmp_path / 's'}")  # fmt: skip
    assert shortest.returncode == 2 and "Traceback" not in shortest.stderr
    assert "image rows are not supported by long2short sampling (train/long2short/samples.py" in shortest.stderr
    config = rl_config(tmp_path / "rl.yaml", tiny_model, image_data / "prompts.jsonl", tmp_path / "text-only")
    text_only = run_k15("train", "rl", "--config", str(config))
    assert text_only.returncode == 2 and "Traceback" not in text_only.stderr
    assert "prompts.jsonl: 8 rows have images, and" in text_only.stderr and "is a text-only model" in text_only.stderr


def test_the_gpu_vision_config_is_valid() -> None:
    from k15.config import load_config
    from k15.train.rl.trainer import RLConfig

    config = load_config(RLConfig, REPO / "configs" / "gpu-qwen2.5vl-rl.yaml")
    assert config.freeze_vision_tower and config.rollout.max_tokens < config.rollout.engine.max_model_len
