"""long2short (§2.4): model merging, shortest rejection sampling, DPO and long2short RL. Selection rules and the DPO
loss on hand-made cases; each method end to end on the tiny model (real DeepSpeed on CPU and the real vLLM engine)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from k15.jsonl import write_rows
from k15.train.runtime.metrics_log import read_metrics
from tests.conftest import REPO, build_tiny_model, run_k15

ENGINE = {"enforce_eager": True, "gpu_memory_utilization": 0.1, "max_model_len": 512}
# What the formatted tiny model answers, about a third each: short and right, long and right, short and wrong.
SHORT = "</think>\n\nThe answer is $\\boxed{7}$."
LONG = "Let me work through this slowly and check every step twice before answering.\n" + SHORT
WRONG = "</think>\n\nThe answer is $\\boxed{8}$."


def sample(text: str, tokens: int, correct: bool) -> dict[str, object]:
    return {"text": text, "tokens": tokens, "correct": correct, "finish_reason": "stop"}


def record(problem: str, *samples: dict[str, object]) -> dict[str, object]:
    return {"id": problem, "prompt": f"prompt {problem}", "gold": "7", "grader": "math", "samples": list(samples)}


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(f).items()}


def max_change(before: Path, after: Path) -> float:
    old, new = weights(before), weights(after)
    assert old.keys() == new.keys()
    return max((new[k].float() - old[k].float()).abs().max().item() for k in old)


# -- selection rules and the DPO loss --------------------------------------------------------------------------------


def test_shortest_selection_takes_the_first_of_the_shortest_correct_responses() -> None:
    from k15.train.long2short.shortest import shortest_correct, shortest_examples

    records = [
        record(
            "a", sample("wrong", 3, False), sample("long", 10, True), sample("tie 1", 6, True), sample("tie 2", 6, True)
        ),
        record("b", sample("wrong 1", 5, False), sample("wrong 2", 9, False)),
        record("c", sample("only", 40, True)),
    ]
    assert shortest_correct(records[0]["samples"])["text"] == "tie 1"
    assert shortest_correct(records[1]["samples"]) is None
    assert shortest_examples(records) == [
        {"id": "a", "prompt": "prompt a", "response": "tie 1"},
        {"id": "c", "prompt": "prompt c", "response": "only"},
    ]


def test_dpo_pairs_reject_wrong_and_much_longer_correct_responses() -> None:
    from k15.train.long2short.dpo import build_pairs

    tie = record("tie", sample("first", 6, True), sample("second", 6, True), sample("bad", 4, False))
    none = record("none", sample("bad 1", 5, False), sample("bad 2", 7, False))
    longer = record("longer", sample("ten", 10, True), sample("fifteen", 15, True), sample("fourteen", 14, True),
                    sample("thirty", 30, True))  # fmt: skip
    similar = record("similar", sample("ten", 10, True), sample("eleven", 11, True), sample("twelve", 12, True))
    pairs, counts = build_pairs([tie, none, longer, similar], length_ratio=1.5)
    assert [(p["id"], p["chosen"], p["rejected"], p["rule"]) for p in pairs] == [
        ("tie", "first", "bad", "wrong"),  # the equal-length correct "second" is neither chosen nor rejected
        ("longer", "ten", "fifteen", "long_correct"),  # exactly 1.5× counts as much longer
        ("longer", "ten", "thirty", "long_correct"),
    ]
    assert all(p["prompt"] == f"prompt {p['id']}" for p in pairs)
    assert counts == {"wrong": 1, "long_correct": 2, "no_correct": 1}
    assert build_pairs([similar]) == ([], {"wrong": 0, "long_correct": 0, "no_correct": 0})
    assert len(build_pairs([longer], length_ratio=3.0)[0]) == 1
    with pytest.raises(ValueError, match="length_ratio"):
        build_pairs([tie], length_ratio=0.9)


def test_dpo_loss_matches_a_hand_computed_value() -> None:
    from k15.train.rl.loss import dpo_loss

    policy_chosen = torch.tensor([-10.0, -5.0, -3.0], requires_grad=True)
    policy_rejected = torch.tensor([-20.0, -7.0, -4.0])
    ref_chosen, ref_rejected = torch.tensor([-12.0, -5.0, -3.0]), torch.tensor([-19.0, -6.0, -4.0])
    losses, margins = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)
    # margins: 0.1·((−10+12) − (−20+19)) = 0.3; 0.1·(0 − (−1)) = 0.1; 0 (policy = reference)
    assert margins.tolist() == pytest.approx([0.3, 0.1, 0.0])
    assert losses.tolist() == pytest.approx([math.log(1 + math.exp(-0.3)), math.log(1 + math.exp(-0.1)), math.log(2)])
    losses.sum().backward()  # d/dπ_w of −log σ(β·Δ) = −β·σ(−β·Δ): raising the chosen's log-prob lowers the loss
    expected = [-0.1 / (1 + math.exp(m)) for m in (0.3, 0.1, 0.0)]
    assert policy_chosen.grad.tolist() == pytest.approx(expected)


# -- model merging ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with other weights: same architecture and tokenizer."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("other") / "model"
    shutil.copytree(tiny_model, out)
    generator = torch.Generator().manual_seed(1)
    for file in out.glob("*.safetensors"):
        tensors = {k: (v.float() + 0.05 * torch.randn(v.shape, generator=generator)).to(v.dtype)
                   for k, v in load_file(file).items()}  # fmt: skip
        save_file(tensors, file, metadata={"format": "pt"})
    return out


def test_merge_writes_the_exact_weighted_average(tiny_model: Path, other_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from k15.chat import K15_CHAT_TEMPLATE
    from k15.checkpoint import read_info
    from k15.train.long2short.merge import merge_checkpoints

    long, short = weights(tiny_model), weights(other_model)
    half = merge_checkpoints(tiny_model, other_model, tmp_path / "half")
    result = run_k15("train", "long2short", "--method", "merge", "--set", f"long={tiny_model}", "--set",
                     f"short={other_model}", "--set", "weights=[0.25,0.75]", "--set", f"output_dir={tmp_path / 'q'}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    quarter = tmp_path / "q" / "final"
    assert str(quarter) in result.stdout
    for path, (a, b) in ((half, (0.5, 0.5)), (quarter, (0.25, 0.75))):
        merged = weights(path)
        assert merged.keys() == long.keys()
        for name, tensor in merged.items():
            assert tensor.dtype == long[name].dtype
            assert torch.equal(tensor, (a * long[name].float() + b * short[name].float()).to(tensor.dtype)), name
        info = read_info(path)
        assert info is not None and info.kind == "long2short" and info.method == "merge"
        assert info.extra == {"long": str(tiny_model), "short": str(other_model), "weights": [a, b]}
        assert AutoTokenizer.from_pretrained(path).chat_template == K15_CHAT_TEMPLATE
        assert json.loads((path / "config.json").read_text()) == json.loads((tiny_model / "config.json").read_text())
    assert read_info(quarter).name == "long2short-merge"
    assert not torch.equal(weights(half)["model.norm.weight"], long["model.norm.weight"])


def test_merge_refuses_other_architectures_tokenizers_and_weights(
    tiny_model: Path, default_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from k15.train.long2short.merge import merge_checkpoints

    wide = build_tiny_model(default_model, tmp_path / "wide", hidden=192)
    with pytest.raises(ValueError, match=r"configs differ \(.*hidden_size 128 vs 192"):
        merge_checkpoints(tiny_model, wide, tmp_path / "out")
    other_vocab = tmp_path / "vocab"
    shutil.copytree(tiny_model, other_vocab)
    tokenizer = AutoTokenizer.from_pretrained(other_vocab)
    tokenizer.add_tokens(["<extra-token>"])
    tokenizer.save_pretrained(other_vocab)
    with pytest.raises(ValueError, match="tokenizers differ in 1 vocabulary entries"):
        merge_checkpoints(tiny_model, other_vocab, tmp_path / "out")
    for bad in ((0.6, 0.6), (-0.5, 1.5), (1.0,)):
        with pytest.raises(ValueError, match="sum to 1"):
            merge_checkpoints(tiny_model, tiny_model, tmp_path / "out", bad)
    with pytest.raises(FileNotFoundError, match="not a Hugging Face checkpoint"):
        merge_checkpoints(tiny_model, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = run_k15("train", "long2short", "--method", "merge", "--set", f"long={tiny_model}", "--set",
                     f"short={wide}", "--set", f"output_dir={tmp_path / 'cli'}")  # fmt: skip
    assert result.returncode == 2 and "hidden_size" in result.stderr and "Traceback" not in result.stderr
    result = run_k15("train", "long2short", "--method", "merge", "--set", f"long={tiny_model}", "--set",
                     f"short={tiny_model}", "--set", "weights=[0.7,0.7]")  # fmt: skip
    assert result.returncode == 2 and "sum to 1" in result.stderr and "Traceback" not in result.stderr


# -- the trained methods end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Demo-task splits. The RL prompts all get the answer 7 (which the formatted model gives two times in three);
    the SFT rows answer each prompt with SHORT, LONG and WRONG."""
    from k15.train.data.arith import make_splits

    paths = make_splits(tmp_path_factory.mktemp("data"), train=4, heldout=1, sft=32)
    rows = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    write_rows(paths["train"], [{**row, "answer": "7"} for row in rows])
    rows = [json.loads(line) for line in paths["sft"].read_text().splitlines()]
    write_rows(paths["sft"], [{"prompt": r["prompt"], "response": a} for r in rows for a in (SHORT, LONG, WRONG)])
    return paths


@pytest.fixture(scope="module")
def formatted(tiny_model: Path, prompts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model after ``k15 train sft`` on the three answers: it closes its thinking and answers 7 or 8."""
    out = tmp_path_factory.mktemp("formatted")
    result = run_k15("train", "sft", "--set", f"model={tiny_model}", "--set", f"data={prompts['sft']}",
                     "--set", f"output_dir={out}", "--set", "epochs=4", "--set", "batch_size=8",
                     "--set", "deepspeed.lr=5e-3", "--set", "deepspeed.micro_batch_size=8",
                     "--set", "max_length=256", "--set", "state_every=100", "--set", "tensorboard=false",
                     timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_metrics(out)[-1]["loss"] < 0.5  # 48 steps: about 0.2, the answers' own randomness included
    return out / "final"


def write_config(path: Path, config: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def sampled_method(model: Path, data: Path, out: Path, **changes: object) -> dict[str, object]:
    return {"model": str(model), "data": {"path": str(data)}, "output_dir": str(out),
            "sampling": {"n": 4, "max_tokens": 48, "engine": ENGINE}, **changes}  # fmt: skip


@pytest.fixture(scope="module")
def shortest_run(formatted: Path, prompts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``k15 train long2short --method shortest``: vLLM samples, then one SFT step."""
    out = tmp_path_factory.mktemp("shortest")
    sft = {"epochs": 1, "batch_size": 16, "deepspeed": {"lr": 1e-3, "micro_batch_size": 8}, "tensorboard": False}
    config = write_config(out / "shortest.yaml", sampled_method(formatted, prompts["train"], out / "run", sft=sft))
    result = run_k15("train", "long2short", "--method", "shortest", "--config", str(config), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "k15 train long2short: shortest checkpoint" in result.stdout
    return out / "run"


def test_shortest_samples_keeps_the_shortest_correct_and_fine_tunes(shortest_run: Path, formatted: Path) -> None:
    from k15.checkpoint import read_info
    from k15.train.data.formats import load_sft_examples
    from k15.train.long2short.samples import read_records
    from k15.train.long2short.shortest import shortest_examples

    records = read_records(shortest_run / "samples.jsonl")
    assert len(records) == 4 and all(r["gold"] == "7" and r["grader"] == "math" for r in records)
    samples = [s for r in records for s in r["samples"]]
    assert len(samples) == 16 and all(
        0 < s["tokens"] <= 48 and s["finish_reason"] in ("stop", "length") for s in samples
    )
    assert any(s["correct"] for s in samples)
    assert all("</think>" in s["text"] and "{7}" in s["text"] for s in samples if s["correct"])
    chosen = shortest_examples(records)
    assert [(e.prompt, e.response) for e in load_sft_examples(shortest_run / "shortest.jsonl")] == [
        (row["prompt"], row["response"]) for row in chosen
    ]
    info = read_info(shortest_run / "final")
    assert info is not None and info.kind == "long2short" and info.method == "shortest" and info.iteration == 1
    assert len(read_metrics(shortest_run)) == 1
    assert max_change(formatted, shortest_run / "final") > 1e-4


def test_complete_samples_are_not_sampled_again(
    shortest_run: Path, prompts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from k15.train.data.formats import load_problems
    from k15.train.long2short.samples import SampleConfig, sample_responses

    before = (shortest_run / "samples.jsonl").read_text()
    sample_responses(str(shortest_run / "no-such-model"), load_problems(prompts["train"]),
                     shortest_run / "samples.jsonl", SampleConfig())  # fmt: skip
    assert "sampling skipped" in capsys.readouterr().out
    assert (shortest_run / "samples.jsonl").read_text() == before


def test_dpo_resumes_the_samples_builds_pairs_and_trains_against_the_starting_model(
    shortest_run: Path, formatted: Path, prompts: dict[str, Path], tmp_path: Path
) -> None:
    """A samples file with the first two prompts done (as a killed run leaves it): the command samples the other
    two, builds the pairs and runs one DPO step."""
    from k15.checkpoint import read_info
    from k15.train.long2short.dpo import build_pairs
    from k15.train.long2short.samples import read_records

    run = tmp_path / "run"
    run.mkdir()
    for name in ("samples.jsonl", "samples.jsonl.progress.jsonl"):
        kept = (shortest_run / name).read_text().splitlines(keepends=True)[:2]
        (run / name).write_text("".join(kept) + '{"id": "torn')
    dpo = {"epochs": 1, "batch_size": 64, "beta": 0.1, "deepspeed": {"lr": 1e-3, "micro_batch_size": 4},
           "tensorboard": False}  # fmt: skip
    config = write_config(tmp_path / "dpo.yaml", sampled_method(formatted, prompts["train"], run, dpo=dpo))
    result = subprocess.run([sys.executable, "-m", "k15", "train", "long2short", "--method", "dpo", "--config", str(config)],
                            capture_output=True, text=True, timeout=900, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_records(run / "samples.jsonl")
    assert records[:2] == read_records(shortest_run / "samples.jsonl")[:2]
    assert [r["id"] for r in records] == [json.loads(line)["id"] for line in prompts["train"].read_text().splitlines()]
    assert all(len(r["samples"]) == 4 for r in records)
    expected, counts = build_pairs(records)
    pairs = [json.loads(line) for line in (run / "pairs.jsonl").read_text().splitlines()]
    assert pairs == expected and len(pairs) == counts["wrong"] + counts["long_correct"] > 0
    (row,) = read_metrics(run)
    assert row["loss"] == pytest.approx(math.log(2), abs=0.02)  # the first step's policy is the reference
    assert 0 <= row["reward_accuracy"] <= 1 and abs(row["reward_margin"]) < 0.05 and row["grad_norm"] > 0
    info = read_info(run / "final")
    assert info is not None and info.kind == "long2short" and info.method == "dpo" and info.iteration == 1
    assert max_change(formatted, run / "final") > 1e-4


def test_long2short_rl_is_the_rl_trainer_with_kind_long2short(
    formatted: Path, prompts: dict[str, Path], tmp_path: Path
) -> None:
    from k15.checkpoint import read_info

    config = write_config(tmp_path / "rl.yaml", {
        "model": str(formatted), "data": {"path": str(prompts["train"])}, "output_dir": str(tmp_path / "run"),
        "iterations": 1, "prompts_per_iteration": 4, "save_every": 1, "tensorboard": False,
        "rollout": {"k": 4, "max_tokens": 48, "engine": ENGINE}, "length_penalty": {"warmup_iterations": 0},
        "prompt_sampling": {"curriculum": False},
        "deepspeed": {"lr": 1e-3, "micro_batch_size": 8},
    })  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "k15", "train", "long2short", "--method", "rl", "--config", str(config)],
                            capture_output=True, text=True, timeout=900, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = read_metrics(tmp_path / "run")
    assert row["samples_trained"] == 16
    info = read_info(tmp_path / "run" / "final")
    assert info is not None and (info.kind, info.method, info.name) == ("long2short", "rl", "long2short-rl")
    assert max_change(formatted, tmp_path / "run" / "final") > 1e-4


def test_demo_long2short_rl_config_is_valid() -> None:
    from k15.app.pipeline import LongCoTPipelineConfig
    from k15.config import load_config
    from k15.train.rl.trainer import RLConfig

    config = load_config(RLConfig, REPO / "configs" / "demo-long2short-rl.yaml", [])
    assert (config.kind, config.method, config.length_penalty.warmup_iterations) == ("long2short", "rl", 0)
    long_cot = load_config(LongCoTPipelineConfig, REPO / "configs" / "demo-long-cot.yaml", []).rl_config()
    assert config.rollout.max_tokens <= long_cot.rollout.max_tokens // 2
