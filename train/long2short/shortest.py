"""Shortest rejection sampling (long2short, §2.4): sample n responses per prompt from the long-CoT model, keep the
shortest correct one, and fine-tune the long-CoT model on those with the SFT trainer (kind long2short)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from k15.config import partial
from k15.images import image_fields
from k15.train.long2short.samples import SampledMethodConfig, TrainedWith, collect_samples, summary, train_on
from k15.train.sft import SFTConfig, SFTTrainer

Row = dict[str, Any]
SFT_FILE = "shortest.jsonl"


def shortest_correct(samples: list[Row]) -> Row | None:
    """The correct sample with the fewest tokens (the first of equals), or None when none is correct."""
    correct = [s for s in samples if s["correct"]]
    return min(correct, key=lambda s: s["tokens"]) if correct else None


def shortest_examples(records: list[Row]) -> list[Row]:
    """One SFT row (id, prompt, response, and the prompt's images if any) per prompt with a correct sample: its
    shortest correct response."""
    rows = []
    for record in records:
        best = shortest_correct(record["samples"])
        if best is not None:
            rows.append({"id": record["id"], "prompt": record["prompt"], **image_fields(record.get("images", ())),
                         "response": best["text"]})  # fmt: skip
    return rows


PartialSFT = partial(SFTConfig)


class ShortestConfig(SampledMethodConfig):
    name: str = "long2short-shortest"
    sft: PartialSFT = Field(default_factory=PartialSFT, description="SFTConfig keys (model, data, run set here)")
    trainer: ClassVar[TrainedWith] = TrainedWith("shortest", SFTConfig, "sft", SFT_FILE)


def run(cfg: ShortestConfig) -> Path:
    """Sample (unless done), select the shortest correct responses, fine-tune; returns the final checkpoint."""
    records = collect_samples(cfg)
    rows = shortest_examples(records)
    if not rows:
        raise ValueError(f"no prompt has a correct sample in {cfg.run_dir()}: nothing to fine-tune on")
    return train_on(cfg, rows, f"{summary(records)}; {len(rows)} SFT examples", SFTTrainer)
