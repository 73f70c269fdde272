"""The DeepSpeed side of every trainer (SFT, RL, DPO): engine settings, the engine, the full weights, and the
Hugging Face export that ``k15 serve`` loads as it is."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from k15.checkpoint import CheckpointInfo, write_info
from k15.config import Config
from k15.failpoints import failpoint
from k15.precision import DType, resolve, torch_dtype
from k15.train.runtime.distributed import world_size
from k15.train.runtime.state import WriteError, write_failure
from k15.train.runtime.vision import VisionInputs, load_k15_tokenizer

_STATE_FORMAT = {0: 0, 1: 2, 2: 2, 3: 3}  # ZeRO stage → the stage whose saved state it can resume from


class DeepSpeedConfig(Config):
    """ZeRO-0 on one rank and ZeRO-2 on several by default; ZeRO-3 and CPU offload by config.
    ``micro_batch_size`` is per rank."""

    zero_stage: Literal[0, 1, 2, 3] | None = Field(
        None,
        description="None: 0 for a single rank (nothing to shard; ZeRO-2's gradient copies made the update 1.4x "
        "slower there), else 2 (1 or more with CPU offload)",
    )
    offload_optimizer: bool = False
    offload_params: bool = Field(False, description="ZeRO-3 only")
    dtype: DType = Field("auto", description="training precision; auto: bf16 with native bf16, else fp32")
    lr: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, gt=0)
    micro_batch_size: int = Field(4, ge=1)
    embedding_lr_scale: float = Field(
        1.0,
        gt=0,
        description="learning-rate factor for the token embeddings: new tokens such as </think> start "
        "from a mean embedding, and Adam moves a weight by about lr per step, so they learn slowly otherwise",
    )

    def stage(self, saved: int | None = None) -> int:
        """The ZeRO stage: the configured one; else the one a run being resumed was ``saved`` with; else 0 for one
        rank without offload, 2 otherwise."""
        if self.zero_stage is not None:
            if saved is not None and _STATE_FORMAT[saved] != _STATE_FORMAT[self.zero_stage]:
                raise ValueError(f"the run's saved training state was written with ZeRO stage {saved}, and "
                                 f"deepspeed.zero_stage is {self.zero_stage}: DeepSpeed cannot resume across them; "
                                 f"set deepspeed.zero_stage: {saved} (or leave it unset) to resume, or start a new "
                                 "output_dir")  # fmt: skip
            return self.zero_stage
        if saved is not None:
            return saved
        return 0 if world_size() == 1 and not self.offload_optimizer else 2

    def as_dict(self, saved_stage: int | None = None) -> dict[str, Any]:
        """The DeepSpeed JSON config. Gradient accumulation is driven by the trainer (variable batch sizes)."""
        zero: dict[str, Any] = {"stage": self.stage(saved_stage)}
        if self.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu"}
        if self.offload_params:
            if self.zero_stage != 3:
                raise ValueError("deepspeed.offload_params needs deepspeed.zero_stage: 3")
            zero["offload_param"] = {"device": "cpu"}
        adam = {"lr": self.lr, "weight_decay": self.weight_decay, "betas": list(self.betas)}
        if not torch.cuda.is_available() and not self.offload_optimizer:
            # FusedAdam needs CUDA; torch's fused CPU AdamW steps 135M fp32 parameters in 0.075 s on 2 cores, its
            # per-tensor default in 0.39 s (docs/train.md)
            adam.update(torch_adam=True, fused=True)
        return {
            "train_micro_batch_size_per_gpu": self.micro_batch_size,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": self.grad_clip,
            "bf16": {"enabled": resolve(self.dtype) == "bfloat16"},
            "fp16": {"enabled": resolve(self.dtype) == "float16"},
            "zero_optimization": zero,
            "optimizer": {"type": "AdamW", "params": adam},
            "steps_per_print": 1 << 30,
            "wall_clock_breakdown": False,
        }


def load_policy(path: str | Path, dtype: DType = "auto") -> tuple[Any, Any, VisionInputs | None]:
    """The model (cast to ``dtype``) and tokenizer at ``path``, with the k15 think template and tokens; for a
    vision-language model also its processor, else None (:func:`load_k15_tokenizer`)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from k15.chat import ensure_think_tokens

    tokenizer, vision = load_k15_tokenizer(Path(path))
    auto = AutoModelForImageTextToText if vision is not None else AutoModelForCausalLM
    model = auto.from_pretrained(path, dtype=torch_dtype(dtype))
    ensure_think_tokens(tokenizer, model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, vision


def build_engine(model: Any, config: DeepSpeedConfig, saved_stage: int | None = None) -> Any:
    """The DeepSpeed engine; ``saved_stage``: the ZeRO stage of the state it will resume from, if any. Frozen
    parameters (``requires_grad=False``: a frozen vision tower) are not given to the optimizer."""
    import deepspeed

    embedding = model.get_input_embeddings().weight
    rest = [p for p in model.parameters() if p is not embedding and p.requires_grad]
    groups = [{"params": rest}, {"params": [embedding], "lr": config.lr * config.embedding_lr_scale}]
    engine, *_ = deepspeed.initialize(model=model, model_parameters=groups, config=config.as_dict(saved_stage))
    return engine


def full_state_dict(engine: Any) -> dict[str, torch.Tensor]:
    """The whole model's weights (Hugging Face names) on this rank; ZeRO-3 shards are gathered first."""
    module = engine.module
    if engine.zero_optimization_stage() == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return module.state_dict()


def reset_optimizer_state(engine: Any) -> None:
    """Forget Adam's moments (the paper resets the optimizer at each mirror-descent iteration)."""
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    inner.state.clear()


def export_hf(engine: Any, tokenizer: Any, out: Path, info: CheckpointInfo, is_writer: bool) -> Path:
    """Write a Hugging Face checkpoint (safetensors, tokenizer with the k15 template, ``k15.json``) atomically;
    ``tokenizer`` is a vision model's processor for one (it writes its tokenizer and image processor too).

    Every rank must call it (ZeRO-3 gathers collectively); only ``is_writer`` writes.
    """
    state = full_state_dict(engine)
    if not is_writer:
        return out
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        engine.module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        failpoint("checkpoint-write")  # half written
        tokenizer.save_pretrained(tmp)
        write_info(tmp, info)
    except Exception as exc:  # whatever the writer raises (safetensors has its own error type)
        reason = write_failure(exc, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        kept = "the previous one is kept" if (out / "k15.json").is_file() else "nothing was written"
        raise WriteError(f"{out}: could not write the checkpoint ({reason}); {kept}") from exc
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
