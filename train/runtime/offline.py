"""Offline trainers (SFT, DPO) on the trainer base: epochs over a fixed list of examples in seeded shuffled
batches. A subclass encodes its examples and defines one optimizer step."""

from __future__ import annotations

import math
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from k15.train.runtime.trainer import Trainer, TrainerConfig


class OfflineConfig(TrainerConfig):
    """Settings of every offline trainer; subclasses give ``data`` its meaning."""

    data: str = Field(description="the training JSONL")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1, description="examples per optimizer step, over all ranks")
    max_length: int = Field(2048, ge=8, description="tokens per sequence (prompt + response); longer ones are cut")


class OfflineTrainer(Trainer):
    """``total = ceil(examples / batch_size) × epochs`` optimizer steps."""

    cfg: OfflineConfig

    def prepare(self, model: Any, model_path: Path) -> None:
        self.size = self.encode()
        self.steps_per_epoch = math.ceil(self.size / self.cfg.batch_size)

    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    @abstractmethod
    def encode(self) -> int:
        """Tokenize the examples (``self.tokenizer`` is ready, the engine not yet); returns how many there are."""

    def batch_indices(self, step: int) -> list[int]:
        """The examples of global step ``step``: a seeded shuffle per epoch, so a resumed run sees the same order."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng(self.cfg.seed + epoch).permutation(self.size)
        size = self.cfg.batch_size
        return [int(i) for i in order[index * size : (index + 1) * size]]
