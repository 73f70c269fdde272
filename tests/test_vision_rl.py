"""Vision RL (issue 14) on a tiny random Idefics3 VLM (tests/vlm.py): SFT on image traces, one RL iteration on image
prompts (real vLLM with images, real DeepSpeed), the log-prob agreement of vLLM and the trainer with images, the
vision tower frozen, resume, the long2short methods (merge, shortest, DPO) on the VLM, and a text-only model
refusing image rows."""

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


def assert_vision_checkpoint(path: Path, method: str) -> None:
    """``path`` is a k15 long2short checkpoint of ``method`` that loads as a vision-language policy, with the
    processor and the k15 template (image parts as the model's placeholder)."""
    from transformers import AutoProcessor

    from k15.chat import k15_chat_template
    from k15.checkpoint import read_info
    from k15.train.runtime.deepspeed_setup import load_policy

    info = read_info(path)
    assert info is not None and (info.kind, info.method) == ("long2short", method)
    assert (path / "processor_config.json").is_file()
    assert AutoProcessor.from_pretrained(path).chat_template == k15_chat_template("<image>")
    model, _, vision = load_policy(path)
    assert vision is not None and type(model).__name__ == "Idefics3ForConditionalGeneration"


def test_merge_averages_a_vision_checkpoint_and_keeps_its_processor(
    vlm_sft: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    import torch

    from tests.test_long2short import weights

    long = vlm_sft / "final"
    result = run_k15("train", "long2short", "--method", "merge", "--set", f"long={long}", "--set", f"short={tiny_vlm}",
                     "--set", f"output_dir={tmp_path}", timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    merged, a, b = weights(tmp_path / "final"), weights(long), weights(tiny_vlm)
    assert merged.keys() == a.keys() and any(".vision_model." in k for k in merged)
    for name, tensor in merged.items():
        assert torch.equal(tensor, (0.5 * a[name].float() + 0.5 * b[name].float()).to(tensor.dtype)), name
    assert any(not torch.equal(merged[k], a[k]) for k in merged if ".vision_model." in k)
    assert_vision_checkpoint(tmp_path / "final", "merge")


def sampled_config(path: Path, model: Path, data: Path, out: Path, **changes: object) -> Path:
    config = {"model": str(model), "data": {"path": str(data), "prompt_template": "{problem}"},
              "output_dir": str(out), "sampling": {"n": 4, "max_tokens": 24, "engine": ENGINE}, **changes}  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def vlm_shortest(vlm_sft: Path, image_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``k15 train long2short --method shortest`` on the image prompts: vLLM samples with the images, then SFT."""
    out = tmp_path_factory.mktemp("vlm-shortest")
    sft = {"epochs": 1, "batch_size": 8, "deepspeed": {"lr": 1e-3, "micro_batch_size": 8}, "tensorboard": False}
    data = image_data / "prompts.jsonl"
    config = sampled_config(out / "shortest.yaml", vlm_sft / "final", data, out / "run", sft=sft)
    result = run_k15("train", "long2short", "--method", "shortest", "--config", str(config), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "run"


def test_shortest_samples_image_prompts_with_their_images_and_fine_tunes_on_them(
    vlm_shortest: Path, vlm_sft: Path, image_data: Path
) -> None:
    from k15.train.data.formats import load_problems, load_sft_examples
    from k15.train.long2short.samples import read_records
    from tests.test_long2short import max_change

    records = read_records(vlm_shortest / "samples.jsonl")
    problems = load_problems(image_data / "prompts.jsonl")
    assert [r["images"] for r in records] == [list(p.images) for p in problems]
    samples = [s for r in records for s in r["samples"]]
    assert len(samples) == 32 and any(s["correct"] for s in samples)
    assert not any("<image>" in s["text"] for s in samples), "placeholders are never sampled"
    examples = load_sft_examples(vlm_shortest / "shortest.jsonl")
    assert examples and all(len(e.images) == 1 for e in examples)
    assert len(read_metrics(vlm_shortest)) == 1
    assert_vision_checkpoint(vlm_shortest / "final", "shortest")
    assert max_change(vlm_sft / "final", vlm_shortest / "final") > 1e-4


def test_dpo_trains_on_image_pairs(vlm_shortest: Path, vlm_sft: Path, image_data: Path, tmp_path: Path) -> None:
    """The shortest run's samples (complete: not sampled again) as DPO pairs with their images; one DPO step."""
    import math

    from tests.test_long2short import max_change

    dpo = {"epochs": 1, "batch_size": 64, "deepspeed": {"lr": 1e-3, "micro_batch_size": 4}, "tensorboard": False}
    config = sampled_config(tmp_path / "dpo.yaml", vlm_sft / "final", image_data / "prompts.jsonl", tmp_path / "run",
                            samples=str(vlm_shortest / "samples.jsonl"), length_ratio=1.0, dpo=dpo)  # fmt: skip
    result = run_k15("train", "long2short", "--method", "dpo", "--config", str(config), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sampling skipped" in result.stdout
    pairs = [json.loads(line) for line in (tmp_path / "run" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(len(p["images"]) == 1 for p in pairs)
    (row,) = read_metrics(tmp_path / "run")
    assert row["loss"] == pytest.approx(math.log(2), abs=0.02) and row["grad_norm"] > 0
    assert_vision_checkpoint(tmp_path / "run" / "final", "dpo")
    assert max_change(vlm_sft / "final", tmp_path / "run" / "final") > 1e-4


def test_a_text_only_model_given_image_rows_fails_naming_the_file(
    tiny_model: Path, image_data: Path, tmp_path: Path
) -> None:
    prompts, sft, pairs = (image_data / f for f in ("prompts.jsonl", "sft.jsonl", "pairs.jsonl"))
    config = rl_config(tmp_path / "rl.yaml", tiny_model, prompts, tmp_path / "rl")
    shortest = sampled_config(tmp_path / "shortest.yaml", tiny_model, prompts, tmp_path / "shortest")
    for args, expected in (
        (["rl", "--config", str(config)], f"{prompts}: 8 rows have images, and"),
        (["sft", "--set", f"model={tiny_model}", "--set", f"data={sft}", "--set", f"output_dir={tmp_path / 'sft'}"],
         f"{sft}: 8 rows have images, and"),
        (["long2short", "--method", "shortest", "--config", str(shortest)], f"{prompts}: 8 rows have images, and"),
    ):  # fmt: skip
        result = run_k15("train", *args, timeout=300)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert expected in result.stderr and "is a text-only model" in result.stderr
    assert not (tmp_path / "shortest" / "samples.jsonl").exists()
    code = ("from k15.train.long2short.dpo import DPOConfig, DPOTrainer\n"
            f"DPOTrainer(DPOConfig(model={str(tiny_model)!r}, data={str(pairs)!r}, output_dir={str(tmp_path)!r}))")  # fmt: skip
    dpo = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert dpo.returncode != 0 and f"{pairs}: 1 rows have images, and" in dpo.stderr, dpo.stderr[-3000:]


def test_the_gpu_vision_config_is_valid() -> None:
    from k15.config import load_config
    from k15.train.rl.trainer import RLConfig

    config = load_config(RLConfig, REPO / "configs" / "gpu-qwen2.5vl-rl.yaml")
    assert config.freeze_vision_tower and config.rollout.max_tokens < config.rollout.engine.max_model_len
