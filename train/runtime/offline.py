"""Offline trainers on DeepSpeed (SFT, DPO): epochs over a fixed list of examples in seeded shuffled batches, exact
resume, metrics and the Hugging Face export. A subclass encodes its examples and defines one optimizer step."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from k15 import paths
from k15.checkpoint import CheckpointInfo, Kind
from k15.config import Config
from k15.models import resolve_model
from k15.precision import describe
from k15.train.runtime.deepspeed_setup import DeepSpeedConfig, build_engine, export_hf, load_policy
from k15.train.runtime.distributed import all_gather_objects, barrier, init_distributed, rank, world_size
from k15.train.runtime.metrics_log import MetricsLogger
from k15.train.runtime.state import load_state, save_state


class OfflineConfig(Config):
    """Settings of every offline trainer; subclasses give ``data`` its meaning and ``name``/``kind``/``method``
    their defaults."""

    model: str | None = Field(None, description="the model to train (default: the embedded default)")
    data: str = Field(description="the training JSONL")
    name: str
    output_dir: str | None = Field(None, description="default: $K15_RUNS/<name>")
    kind: Kind
    method: str
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1, description="examples per optimizer step, over all ranks")
    max_length: int = Field(2048, ge=8, description="tokens per sequence (prompt + response); longer ones are cut")
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    state_every: int = Field(20, ge=1, description="save the resumable state every N steps")
    keep_states: int = Field(2, ge=1)
    seed: int = 0
    tensorboard: bool = True
    wandb: bool = False

    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else paths.runs_dir() / self.name


class OfflineTrainer(ABC):
    """The loop: ``total = ceil(examples / batch_size) × epochs`` steps; the state saved every ``state_every`` steps
    holds the weights, the optimizer, the step and :meth:`shared_state`, so a killed run resumes exactly."""

    def __init__(self, config: OfflineConfig) -> None:
        self.cfg = config
        self.run_dir = config.run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        init_distributed()
        self.rank, self.world = rank(), world_size()
        torch.manual_seed(config.seed)
        model_path = resolve_model(config.model)
        self.base_model = str(model_path)
        model, self.tokenizer = load_policy(model_path, config.deepspeed.dtype)
        if self.rank == 0:
            print(f"k15 train: precision {describe(config.deepspeed.dtype)}", flush=True)
        self.size = self.encode()
        self.engine = build_engine(model, config.deepspeed)
        self.steps_per_epoch = math.ceil(self.size / config.batch_size)
        self.total = self.steps_per_epoch * config.epochs
        restored = load_state(self.engine, self.run_dir / "state")
        self.resumed = restored is not None
        self.step = restored[0]["step"] if restored else 0
        self.restore(restored[0] if restored else None)
        self.logger = MetricsLogger(self.run_dir, self.total, self.step, self.rank == 0, config.tensorboard,
                                    config.wandb, config.name)  # fmt: skip

    @abstractmethod
    def encode(self) -> int:
        """Tokenize the examples (``self.tokenizer`` is ready, the engine not yet); returns how many there are."""

    @abstractmethod
    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step on the examples of :meth:`batch_indices`; returns the step's metrics."""

    def restore(self, shared: dict[str, Any] | None) -> None:
        """Set up what training needs besides the weights, from the saved state when resuming (None: a fresh run)."""
        return None

    def shared_state(self) -> dict[str, Any]:
        """What :meth:`restore` needs on resume, saved with every state."""
        return {}

    def batch_indices(self, step: int) -> list[int]:
        """The examples of global step ``step``: a seeded shuffle per epoch, so a resumed run sees the same order."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng(self.cfg.seed + epoch).permutation(self.size)
        size = self.cfg.batch_size
        return [int(i) for i in order[index * size : (index + 1) * size]]

    def micro_batches(self, indices: list[int]) -> list[list[int]]:
        """``indices`` (this rank's) in micro-batches, padded with empty ones to the same count on every rank:
        ZeRO reduces gradients collectively, so every rank must run as many forward and backward passes."""
        micro = self.cfg.deepspeed.micro_batch_size
        batches = [indices[j : j + micro] for j in range(0, len(indices), micro)]
        count = max(1, *all_gather_objects(len(batches)))
        return batches + [[] for _ in range(count - len(batches))]

    def train(self) -> Path:
        """Run the remaining steps; returns the final Hugging Face checkpoint."""
        cfg = self.cfg
        final = self.run_dir / "final"
        if self.resumed and self.rank == 0:
            print(f"k15 train: resuming {self.run_dir} after step {self.step}", flush=True)
        metrics: dict[str, float] = {}
        try:
            while self.step < self.total:
                metrics = self.train_step(self.step)
                self.step += 1
                self.logger.log(self.step, metrics)
                if self.step % cfg.state_every == 0 or self.step == self.total:
                    save_state(self.engine, self.run_dir / "state", self.step,
                               {"step": self.step, **self.shared_state()}, {}, cfg.keep_states)  # fmt: skip
            info = CheckpointInfo(kind=cfg.kind, name=cfg.name, base_model=self.base_model, method=cfg.method,
                                  iteration=self.step, metrics=metrics)  # fmt: skip
            if not (final / "k15.json").is_file() or metrics:
                export_hf(self.engine, self.tokenizer, final, info, self.rank == 0)
        finally:
            self.logger.close()
        barrier()
        return final
