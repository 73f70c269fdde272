"""Shortest rejection sampling (long2short, §2.4): sample n responses per prompt from the long-CoT model, keep the
shortest correct one, and fine-tune the long-CoT model on those with the SFT trainer (kind long2short)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from k15.checkpoint import Kind
from k15.config import merged, partial
from k15.train.data.formats import write_jsonl
from k15.train.long2short.samples import SampledMethodConfig, collect_samples, summary
from k15.train.runtime.distributed import barrier, rank
from k15.train.sft import SFTConfig, SFTTrainer

Row = dict[str, Any]
SFT_FILE = "shortest.jsonl"


def shortest_correct(samples: list[Row]) -> Row | None:
    """The correct sample with the fewest tokens (the first of equals), or None when none is correct."""
    correct = [s for s in samples if s["correct"]]
    return min(correct, key=lambda s: s["tokens"]) if correct else None


def shortest_examples(records: list[Row]) -> list[Row]:
    """One SFT row (id, prompt, response) per prompt with a correct sample: its shortest correct response."""
    rows = []
    for record in records:
        best = shortest_correct(record["samples"])
        if best is not None:
            rows.append({"id": record["id"], "prompt": record["prompt"], "response": best["text"]})
    return rows


PartialSFT = partial(SFTConfig)


class ShortestConfig(SampledMethodConfig):
    name: str = "long2short-shortest"
    sft: PartialSFT = Field(default_factory=lambda: PartialSFT(),
                            description="SFTConfig keys of the fine-tuning (model, data, name, output_dir, kind and "
                            "method are set from this config)")  # fmt: skip

    def sft_config(self) -> SFTConfig:
        fixed = {"model": self.model, "data": str(self.run_dir() / SFT_FILE), "name": self.name,
                 "output_dir": str(self.run_dir()), "kind": Kind.long2short, "method": "shortest"}  # fmt: skip
        return merged(SFTConfig, self.sft, fixed, "sft")

    @model_validator(mode="after")
    def _sft_valid(self) -> ShortestConfig:
        self.sft_config()  # a bad SFT setting fails here, before any sampling
        return self


def run(cfg: ShortestConfig) -> Path:
    """Sample (unless done), select the shortest correct responses, fine-tune; returns the final checkpoint."""
    records = collect_samples(cfg)
    rows = shortest_examples(records)
    if not rows:
        raise ValueError(f"no prompt has a correct sample in {cfg.run_dir()}: nothing to fine-tune on")
    sft = cfg.sft_config()
    if rank() == 0:
        write_jsonl(sft.data, rows)
        print(f"long2short shortest: {summary(records)}; {len(rows)} SFT examples in {sft.data}", flush=True)
    barrier()
    return SFTTrainer(sft).train()
