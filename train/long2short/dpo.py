"""DPO for long2short (§2.4) on DeepSpeed: the shortest correct response of a prompt is preferred to its wrong
responses and to its correct ones that are much longer. The reference policy is the starting model, whose
log-probabilities are computed once before the first step (and kept in the resumable state). Pairs with images
train a vision-language model on them, as SFT does (prompt placeholders expanded, pixel inputs in both passes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from k15.checkpoint import Kind
from k15.config import partial
from k15.images import image_fields
from k15.train.data.formats import SFTExample, load_preference_pairs
from k15.train.long2short.samples import SampledMethodConfig, TrainedWith, collect_samples, summary, train_on
from k15.train.long2short.shortest import shortest_correct
from k15.train.rl.loss import dpo_loss
from k15.train.runtime.distributed import all_gather_objects
from k15.train.runtime.offline import OfflineConfig, OfflineTrainer
from k15.train.runtime.vision import check_images
from k15.train.sft import encode_example

Row = dict[str, Any]
PAIRS_FILE = "pairs.jsonl"


def build_pairs(records: list[Row], length_ratio: float = 1.5) -> tuple[list[Row], dict[str, int]]:
    """Preference pairs from sample records: per prompt, chosen = the shortest correct response (the first of
    equals); rejected = each wrong response ("wrong") and each other correct one with at least ``length_ratio`` ×
    the chosen's tokens ("long_correct"). Counts: pairs per rule, and prompts with no correct response."""
    if length_ratio < 1:
        raise ValueError(f"length_ratio must be at least 1, got {length_ratio}")
    pairs: list[Row] = []
    counts = {"wrong": 0, "long_correct": 0, "no_correct": 0}
    for record in records:
        chosen = shortest_correct(record["samples"])
        if chosen is None:
            counts["no_correct"] += 1
            continue
        for sample in record["samples"]:
            if not sample["correct"]:
                rule = "wrong"
            elif sample is not chosen and sample["tokens"] >= length_ratio * chosen["tokens"]:
                rule = "long_correct"
            else:
                continue
            counts[rule] += 1
            pairs.append({"id": record["id"], "prompt": record["prompt"], **image_fields(record.get("images", ())),
                          "chosen": chosen["text"], "rejected": sample["text"], "rule": rule})  # fmt: skip
    return pairs, counts


class DPOConfig(OfflineConfig):
    """DPO training settings; ``batch_size`` and ``deepspeed.micro_batch_size`` count pairs (two sequences each)."""

    data: str = Field(description="JSONL of prompt / chosen / rejected rows")
    name: str = "long2short-dpo"
    kind: Kind = Kind.long2short
    method: str = "dpo"
    beta: float = Field(0.1, gt=0, description="β of the DPO loss: the strength of the tie to the reference")


class DPOTrainer(OfflineTrainer):
    cfg: DPOConfig

    def __init__(self, config: DPOConfig) -> None:
        self.pairs = load_preference_pairs(config.data)  # bad data fails here, before any engine starts
        super().__init__(config)

    def encode(self) -> int:
        check_images(sum(bool(p.images) for p in self.pairs), self.cfg.data, self.base_model, self.vision is not None)
        length, vision = self.cfg.max_length, self.vision
        self.encoded = [
            (encode_example(self.tokenizer, SFTExample(p.prompt, p.chosen, p.images), length, vision),
             encode_example(self.tokenizer, SFTExample(p.prompt, p.rejected, p.images), length, vision))
            for p in self.pairs
        ]  # fmt: skip
        return len(self.encoded)

    def restore(self, shared: dict[str, Any] | None, own: dict[str, Any] | None) -> None:
        self.reference = shared["reference"] if shared else self.reference_logprobs()

    def shared_state(self) -> dict[str, Any]:
        return {"reference": self.reference}

    def pair_tokens(self, pair: int) -> int:
        """The tokens of a pair's longer sequence (what its micro-batch pads to)."""
        return max(len(self.encoded[pair][0][0]), len(self.encoded[pair][1][0]))

    def pair_logprobs(self, model: Any, batch: list[int]) -> tuple[Tensor, Tensor]:
        """Sequence log-probs of the chosen and of the rejected responses of ``batch``, in one forward pass (an
        empty batch runs one pad sequence, so that every rank makes the same passes)."""
        sequences = [self.encoded[i][0] for i in batch] + [self.encoded[i][1] for i in batch]
        logp, _, _ = self.logprobs(model, sequences, images=[self.pairs[i].images for i in batch] * 2)
        return logp[: len(batch)], logp[len(batch) : 2 * len(batch)]

    def reference_logprobs(self) -> list[list[float]]:
        """[log π_ref(chosen), log π_ref(rejected)] of every pair under the starting model (ranks share the work)."""
        self.engine.module.eval()
        mine: dict[int, list[float]] = {}
        with torch.no_grad():
            for batch in self.micro_batches(list(range(self.rank, self.size, self.world)), self.pair_tokens):
                chosen, rejected = self.pair_logprobs(self.engine.module, batch)
                mine.update({i: [c, r] for i, c, r in zip(batch, chosen.tolist(), rejected.tolist(), strict=True)})
        self.engine.module.train()
        by_index = {i: v for part in all_gather_objects(mine) for i, v in part.items()}
        return [by_index[i] for i in range(self.size)]

    def train_step(self, step: int) -> dict[str, float]:
        started = time.perf_counter()
        mine = self.batch_indices(step)[self.rank :: self.world]
        total = max(1, sum(all_gather_objects(len(mine))))
        batches = self.micro_batches(mine, self.pair_tokens)
        sums = {"loss": 0.0, "margin": 0.0, "right": 0.0}
        for m, batch in enumerate(batches):
            self.engine.set_gradient_accumulation_boundary(m == len(batches) - 1)
            chosen, rejected = self.pair_logprobs(self.engine, batch)
            ref = torch.tensor([self.reference[i] for i in batch], dtype=chosen.dtype, device=chosen.device)
            ref = ref.reshape(len(batch), 2)
            losses, margins = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], self.cfg.beta)
            self.backward(losses.sum(), total)  # the mean over the global batch
            self.optimizer_step()
            sums["loss"] += float(losses.detach().sum())
            sums["margin"] += float(margins.sum())
            sums["right"] += float((margins > 0).sum())
        gathered = all_gather_objects(sums)
        return {
            "loss": sum(s["loss"] for s in gathered) / total,
            "reward_margin": sum(s["margin"] for s in gathered) / total,
            "reward_accuracy": sum(s["right"] for s in gathered) / total,
            "grad_norm": self.grad_norm(),
            "lr": float(self.engine.get_lr()[0]),
            "step_s": time.perf_counter() - started,
        }


PartialDPO = partial(DPOConfig)


class Long2ShortDPOConfig(SampledMethodConfig):
    name: str = "long2short-dpo"
    length_ratio: float = Field(1.5, ge=1, description="a correct response this many times the chosen's length "
                                "(in tokens) or longer is rejected")  # fmt: skip
    dpo: PartialDPO = Field(default_factory=PartialDPO, description="DPOConfig keys (model, data, run set here)")
    trainer: ClassVar[TrainedWith] = TrainedWith("dpo", DPOConfig, "dpo", PAIRS_FILE)


def run(cfg: Long2ShortDPOConfig) -> Path:
    """Sample (unless done), build the preference pairs, train with DPO; returns the final checkpoint."""
    records = collect_samples(cfg)
    pairs, counts = build_pairs(records, cfg.length_ratio)
    if not pairs:
        raise ValueError(f"no preference pair from the samples in {cfg.run_dir()} ({counts['no_correct']} prompts "
                         "without a correct response): nothing to train on")  # fmt: skip
    note = (f"{summary(records)}; {len(pairs)} pairs ({counts['wrong']} wrong, {counts['long_correct']} long correct "
            "rejected)")  # fmt: skip
    return train_on(cfg, pairs, note, DPOTrainer)
