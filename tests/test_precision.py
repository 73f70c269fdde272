"""The automatic precision: bf16 only where the hardware does it natively, and every path it can pick works."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from k15 import precision
from k15.engine import EngineConfig
from k15.train.runtime.deepspeed_setup import DeepSpeedConfig

# The dtypes worth training in on this machine: fp32 always; bf16 where it is native (elsewhere PyTorch's reference
# bf16 GEMM makes a step of even the tiny model take minutes).
TRAINABLE = ["float32"] + (["bfloat16"] if precision.native_bf16()[0] else [])


def test_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("K15_DTYPE", raising=False)
    caps = torch.cpu.get_capabilities()
    native = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    assert precision.native_bf16()[0] is native or torch.cuda.is_available()
    assert precision.resolve("auto") == ("bfloat16" if precision.native_bf16()[0] else "float32")
    for flags, expected in (({"avx2": True}, "float32"), ({"avx512_bf16": True}, "bfloat16"),
                            ({"amx_bf16": True}, "bfloat16")):  # fmt: skip
        precision.native_bf16.cache_clear()
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda flags=flags: {"cpu_name": "test CPU", **flags})
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert precision.resolve("auto") == expected, flags
        assert precision.describe("auto").startswith(f"{expected} (auto: test CPU")
    precision.native_bf16.cache_clear()


def test_an_explicit_dtype_wins_and_a_wrong_one_is_named() -> None:
    for name in ("bfloat16", "float32", "float16"):
        assert precision.resolve(name) == name
        assert precision.describe(name) == f"{name} (set in the config)"
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        precision.resolve("fp8")


def test_k15_dtype_forces_what_auto_becomes_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    other = "float32" if precision.native_bf16()[0] else "bfloat16"
    monkeypatch.setenv("K15_DTYPE", other)
    assert precision.resolve("auto") == other and precision.torch_dtype("auto") == getattr(torch, other)
    assert precision.describe("auto") == f"{other} (auto, forced by K15_DTYPE; {precision.native_bf16()[1]})"
    args = EngineConfig().server_args()
    assert args[args.index("--dtype") + 1] == other
    assert DeepSpeedConfig().as_dict()["bf16"]["enabled"] is (other == "bfloat16")
    for name in ("bfloat16", "float32"):  # an explicit dtype in a config still wins
        assert precision.resolve(name) == name
    monkeypatch.setenv("K15_DTYPE", "fp8")
    with pytest.raises(ValueError, match="K15_DTYPE='fp8' is not a dtype"):
        precision.resolve("auto")
    monkeypatch.setenv("K15_DTYPE", "")  # set but empty: unset
    assert precision.resolve("auto") == ("bfloat16" if precision.native_bf16()[0] else "float32")


def test_configs_carry_the_resolved_precision() -> None:
    chosen = precision.resolve("auto")
    assert EngineConfig().llm_kwargs()["dtype"] == chosen
    args = EngineConfig().server_args()
    assert args[args.index("--dtype") + 1] == chosen
    assert EngineConfig(dtype="float32").llm_kwargs()["dtype"] == "float32"
    ds = DeepSpeedConfig().as_dict()
    assert ds["bf16"]["enabled"] is (chosen == "bfloat16") and ds["fp16"]["enabled"] is False
    assert DeepSpeedConfig(dtype="float32").as_dict()["bf16"]["enabled"] is False
    assert DeepSpeedConfig(dtype="bfloat16").as_dict()["bf16"]["enabled"] is True


@pytest.mark.parametrize("dtype", TRAINABLE)
def test_a_training_step_in_each_precision_lowers_the_loss(tiny_model: Path, dtype: str) -> None:
    """The bf16 checkpoint on disk is cast to the chosen precision, and plain AdamW steps on one batch learn it."""
    from k15.train.runtime.deepspeed_setup import load_policy

    model, tokenizer, _ = load_policy(tiny_model, dtype)  # type: ignore[arg-type]
    assert all(p.dtype == getattr(torch, dtype) for p in model.parameters())
    ids = tokenizer(["The answer is 42. The answer is 42."] * 2, return_tensors="pt").input_ids
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_the_zero_stage_of_a_resumed_run_is_the_saved_states(tmp_path: Path) -> None:
    """DeepSpeed loads a state only into the optimizer that wrote it: an unset stage follows the saved state, an
    explicit one that cannot resume it is a clear error."""
    from k15.train.runtime.state import LATEST, saved_zero_stage

    assert saved_zero_stage(tmp_path) is None
    layouts = {0: ["mp_rank_00_model_states.pt"],
               2: ["mp_rank_00_model_states.pt", "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"],
               3: ["zero_pp_rank_0_mp_rank_00_model_states.pt", "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"]}  # fmt: skip
    for stage, files in layouts.items():
        state = tmp_path / f"zero{stage}"
        (state / "step-0000001").mkdir(parents=True)
        for name in files:
            (state / "step-0000001" / name).touch()
        assert saved_zero_stage(state) is None  # not complete until k15-latest names it
        (state / LATEST).write_text("step-0000001")
        assert saved_zero_stage(state) == stage
        assert DeepSpeedConfig().as_dict(stage)["zero_optimization"]["stage"] == stage
    assert DeepSpeedConfig(zero_stage=1).stage(saved=2) == 1  # ZeRO-1 and 2 write the same state
    with pytest.raises(ValueError, match=r"written with ZeRO stage 2, and deepspeed\.zero_stage is 0"):
        DeepSpeedConfig(zero_stage=0).stage(saved=2)
