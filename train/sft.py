"""Supervised fine-tuning on DeepSpeed: the long-CoT warm-up (§2.3.1 "long-CoT supervised fine-tuning") and the
``shortest`` long2short method. Loss: mean cross-entropy over the response tokens of each global batch. Examples
with images train a vision-language model on them (the processor's pixel inputs in the forward pass)."""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import Field

from k15.chat import THINK_START
from k15.checkpoint import Kind
from k15.train.data.formats import SFTExample, load_sft_examples
from k15.train.rl.rollout import prompt_ids
from k15.train.runtime.deepspeed_setup import DeepSpeedConfig
from k15.train.runtime.distributed import all_gather_objects
from k15.train.runtime.offline import OfflineConfig, OfflineTrainer
from k15.train.runtime.vision import VisionInputs, check_images

log = logging.getLogger(__name__)


class SFTConfig(OfflineConfig):
    data: str = Field(description="JSONL of prompt / response rows (responses hold the <think> reasoning)")
    name: str = "long-cot-sft"
    kind: Kind = Kind.long_cot
    method: str = "sft-warmup"
    epochs: int = Field(2, ge=1)
    deepspeed: DeepSpeedConfig = DeepSpeedConfig(lr=1e-5)


def encode_example(
    tokenizer: Any, example: SFTExample, max_length: int, vision: VisionInputs | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of prompt (k15 template, which opens ``<think>``) + response + end of turn, and the loss mask
    (1 on response tokens). A response that repeats the opening ``<think>`` has it removed. An example with images
    (``vision``: the model's processor) has them in its prompt, each placeholder expanded, and is cut in its
    response only: the image tokens stay whole."""
    response = example.response.lstrip()
    response = response[len(THINK_START) :].lstrip("\n") if response.startswith(THINK_START) else response
    if example.images and vision is not None:
        prompt = vision.prompt(example.prompt, example.images)[1]
        max_length = max(max_length, len(prompt) + 1)
    else:
        prompt = prompt_ids(tokenizer, example.prompt)
    answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + answer)[:max_length]
    mask = ([0] * len(prompt) + [1] * len(answer))[:max_length]
    return ids, mask


class SFTTrainer(OfflineTrainer):
    def __init__(self, config: SFTConfig) -> None:
        self.examples = load_sft_examples(config.data)  # bad data fails here, before any engine starts
        super().__init__(config)

    def encode(self) -> int:
        image_rows = sum(bool(e.images) for e in self.examples)
        check_images(image_rows, self.cfg.data, self.base_model, self.vision is not None)
        self.encoded = [encode_example(self.tokenizer, e, self.cfg.max_length, self.vision) for e in self.examples]
        cut = sum(len(ids) == self.cfg.max_length for ids, _ in self.encoded)
        if cut and self.rank == 0:
            log.warning("%d of %d examples cut to max_length %d", cut, len(self.encoded), self.cfg.max_length)
        return len(self.encoded)

    def train_step(self, step: int) -> dict[str, float]:
        started = time.perf_counter()
        mine = self.batch_indices(step)[self.rank :: self.world]
        batches = self.micro_batches(mine, lambda i: len(self.encoded[i][0]))
        tokens = sum(sum(self.encoded[i][1][1:]) for i in mine)
        total_tokens = max(1, sum(all_gather_objects(tokens)))
        loss_sum = 0.0
        for m, batch in enumerate(batches):
            self.engine.set_gradient_accumulation_boundary(m == len(batches) - 1)
            logp, _, _ = self.logprobs(self.engine, [self.encoded[i] for i in batch],
                                       images=[self.examples[i].images for i in batch])  # fmt: skip
            nll = -logp.sum()
            self.backward(nll, total_tokens)  # the token mean over the global batch
            self.optimizer_step()
            loss_sum += float(nll.detach())
        seconds = time.perf_counter() - started
        trained = sum(all_gather_objects(sum(len(self.encoded[i][0]) for i in mine)))
        return {
            "loss": sum(all_gather_objects(loss_sum)) / total_tokens,
            "grad_norm": self.grad_norm(),
            "lr": float(self.engine.get_lr()[0]),
            "train_tokens_per_s": trained / max(seconds, 1e-9),
            "step_s": seconds,
        }
