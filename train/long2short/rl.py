"""long2short RL (§2.4): the long-CoT RL trainer run again on the long model, its checkpoints labelled long2short;
the length penalty and a shorter token budget (the config's) make it answer in fewer tokens."""

from __future__ import annotations

from pathlib import Path

from k15.checkpoint import Kind
from k15.train.rl.trainer import RLConfig, RLTrainer


class Long2ShortRLConfig(RLConfig):
    name: str = "long2short-rl"
    kind: Kind = Kind.long2short


def run(cfg: Long2ShortRLConfig) -> Path:
    return RLTrainer(cfg).train()
