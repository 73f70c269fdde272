"""The DeepSpeed trainer base of every k15 trainer (RL, SFT, DPO): set-up, exact resume, the step loop with its
resumable state, the Hugging Face exports, and the pieces every step needs across ranks (micro-batches of equal
count, the world-size loss scaling, padding an empty micro-batch). A subclass says how many steps there are and
what one step does."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from k15 import paths
from k15.checkpoint import CheckpointInfo, Kind
from k15.config import Config
from k15.models import resolve_model
from k15.precision import describe
from k15.train.runtime.deepspeed_setup import DeepSpeedConfig, build_engine, export_hf, load_policy
from k15.train.runtime.distributed import (
    all_gather_objects,
    barrier,
    close_distributed,
    init_distributed,
    rank,
    world_size,
)
from k15.train.runtime.logprobs import sequence_logprobs
from k15.train.runtime.metrics_log import MetricsLogger, rounded
from k15.train.runtime.state import load_state, save_state, saved_zero_stage
from k15.train.runtime.vision import freeze_vision_tower


class TrainerConfig(Config):
    """Settings every trainer shares; subclasses give ``name``/``kind``/``method`` their defaults."""

    model: str | None = Field(None, description="the model to train (default: the embedded default)")
    name: str
    output_dir: str | None = Field(None, description="default: $K15_RUNS/<name>")
    kind: Kind
    method: str
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    state_every: int = Field(20, ge=1, description="save the resumable state every N steps")
    keep_states: int = Field(2, ge=1)
    seed: int = 0
    freeze_vision_tower: bool = Field(
        False, description="a vision-language model's vision tower is not trained (not in the optimizer)"
    )
    tensorboard: bool = True
    wandb: bool = False

    def run_dir(self) -> Path:
        return paths.run_dir(self.output_dir, self.name)


class Trainer(ABC):
    """Set-up → resume → ``train_step`` × :meth:`total_steps` → export. The state saved every ``state_every`` steps
    holds the weights, the optimizer, the step, :meth:`shared_state` (the same on every rank) and
    :meth:`own_state` (this rank's), so a killed run resumes exactly."""

    unit = "step"  # what one step is called in messages ("iteration" for RL)

    def __init__(self, config: TrainerConfig) -> None:
        self.cfg = config
        self.run_dir = config.run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        init_distributed()
        self.rank, self.world = rank(), world_size()
        torch.manual_seed(config.seed)
        model_path = resolve_model(config.model)
        self.base_model = str(model_path)
        model, self.tokenizer, self.vision = load_policy(model_path, config.deepspeed.dtype)
        self.pad_id: int = self.tokenizer.pad_token_id
        frozen = freeze_vision_tower(model, str(model_path)) if config.freeze_vision_tower else 0
        if self.rank == 0:
            print(f"k15 train: {self.precision_note()}", flush=True)
            if frozen:
                print(f"k15 train: vision tower frozen ({frozen:,} parameters)", flush=True)
        self.prepare(model, model_path)
        self.engine = build_engine(model, config.deepspeed, saved_zero_stage(self.run_dir / "state"))
        # An fp32 engine without ZeRO clips by a gradient norm it does not keep (DeepSpeed's clip_fp32_gradients):
        # the trainer measures that one itself (grad_norm).
        self._own_grad_norm = not (self.engine.zero_optimization_stage() or self.engine.bfloat16_enabled()
                                   or self.engine.fp16_enabled())  # fmt: skip
        self._grad_norm = 0.0
        restored = load_state(self.engine, self.run_dir / "state")
        self.resumed = restored is not None
        self.step: int = restored[0]["step"] if restored else 0
        self.restore(*(restored or (None, None)))
        self.logger = MetricsLogger(self.run_dir, self.total_steps(), self.step, self.rank == 0, config.tensorboard,
                                    config.wandb, config.name)  # fmt: skip

    # -- what a subclass defines ---------------------------------------------------------------------------------

    @abstractmethod
    def total_steps(self) -> int: ...

    @abstractmethod
    def train_step(self, step: int) -> dict[str, float]:
        """One step (an optimizer step, or an RL iteration); returns its metrics."""

    def prepare(self, model: Any, model_path: Path) -> None:
        """Before the engine is built: tokenize the data, save what rollout engines load."""
        return None

    def restore(self, shared: dict[str, Any] | None, own: dict[str, Any] | None) -> None:
        """Set up what training needs besides the weights, from the saved state when resuming (None: fresh)."""
        return None

    def shared_state(self) -> dict[str, Any]:
        return {}

    def own_state(self) -> dict[str, Any]:
        return {}

    def after_step(self, metrics: dict[str, float]) -> None:
        """Called after each step is logged (e.g. periodic checkpoints)."""
        return None

    def close(self) -> None:
        """Release what the trainer started (e.g. rollout engines)."""
        return None

    def precision_note(self) -> str:
        return f"precision {describe(self.cfg.deepspeed.dtype)}"

    # -- what every step needs across ranks ----------------------------------------------------------------------

    def mini_batches(self, items: list[Any], steps: int, length: Callable[[Any], int]) -> list[list[list[Any]]]:
        """``items`` (this rank's) in ``steps`` mini-batches of micro-batches, with the same micro-batch count on
        every rank: ZeRO reduces gradients collectively, so every rank must run as many backward passes (a rank
        short of items runs empty micro-batches, see :meth:`logprobs`). Within a mini-batch, whose gradients add
        up, items are ordered by ``length`` (tokens), so each micro-batch pads to a length near its own."""
        size = self.cfg.deepspeed.micro_batch_size
        chunks = [sorted(items[j::steps], key=length) for j in range(steps)]
        local = [math.ceil(len(c) / size) for c in chunks]
        counts = [max(1, *col) for col in zip(*all_gather_objects(local), strict=True)]
        return [[c[m * size : (m + 1) * size] for m in range(n)] for c, n in zip(chunks, counts, strict=True)]

    def micro_batches(self, items: list[Any], length: Callable[[Any], int]) -> list[list[Any]]:
        return self.mini_batches(items, 1, length)[0]

    def logprobs(
        self, model: Any, sequences: Sequence[tuple[list[int], list[int]]], with_entropy: bool = False,
        temperature: float = 1.0, images: Sequence[Sequence[str]] = (),
    ) -> tuple[Tensor, Tensor | None, Tensor]:  # fmt: skip
        """Sequence log-probs of (ids, loss mask) pairs at ``temperature``; ``images[i]``: the images of sequence i
        (its prompt's placeholders expanded), none for text. An empty micro-batch runs one pad sequence that trains
        nothing, so that every rank makes the same passes."""
        sequences = list(sequences) or [([self.pad_id, self.pad_id], [0, 0])]
        pixels = None
        if self.vision is not None and any(images):
            pixels = self.vision.pixel_inputs(images, next(model.parameters()).dtype)
        return sequence_logprobs(model, [s[0] for s in sequences], [s[1] for s in sequences], self.pad_id,
                                 with_entropy, temperature, pixels)  # fmt: skip

    def backward(self, loss_sum: Tensor, global_count: float) -> None:
        """Backward of ``loss_sum`` / ``global_count`` (the mean over all ranks' items): DeepSpeed averages
        gradients over ranks, hence the world-size factor."""
        self.engine.backward(loss_sum * self.world / max(global_count, 1), scale_wrt_gas=False)

    def optimizer_step(self) -> None:
        """``engine.step()``: the optimizer steps at the gradient-accumulation boundary (set by the caller)."""
        if self._own_grad_norm and self.engine.is_gradient_accumulation_boundary():
            grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
            self._grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        self.engine.step()

    def grad_norm(self) -> float:
        """The 2-norm of the gradients of the last optimizer step, before clipping, over all ranks."""
        if self._own_grad_norm:
            return self._grad_norm
        return float(self.engine.get_global_grad_norm() or 0.0)

    # -- the loop ------------------------------------------------------------------------------------------------

    def checkpoint_info(self, metrics: dict[str, float]) -> CheckpointInfo:
        return CheckpointInfo(kind=self.cfg.kind, name=self.cfg.name, base_model=self.base_model,
                              method=self.cfg.method, iteration=self.step, metrics=rounded(metrics))  # fmt: skip

    def export(self, out: Path, metrics: dict[str, float]) -> Path:
        saver = self.vision.processor if self.vision is not None else self.tokenizer
        return export_hf(self.engine, saver, out, self.checkpoint_info(metrics), self.rank == 0)

    def train(self) -> Path:
        """Run the remaining steps; returns the final Hugging Face checkpoint."""
        cfg, total = self.cfg, self.total_steps()
        final = self.run_dir / "final"
        if self.resumed and self.rank == 0:
            print(f"k15 train: resuming {self.run_dir} after {self.unit} {self.step}", flush=True)
        metrics: dict[str, float] = {}
        try:
            while self.step < total:
                metrics = self.train_step(self.step)
                self.step += 1
                self.logger.log(self.step, metrics)
                self.after_step(metrics)
                if self.step % cfg.state_every == 0 or self.step == total:
                    shared = {"step": self.step, **self.shared_state()}
                    save_state(
                        self.engine, self.run_dir / "state", self.step, shared, self.own_state(), cfg.keep_states
                    )
            if not (final / "k15.json").is_file() or metrics:  # exported again only if this run trained
                self.export(final, metrics or self.logger.last())
        finally:
            self.logger.close()
            self.close()
        barrier()
        close_distributed()
        return final
