"""Supervised fine-tuning on DeepSpeed: the long-CoT warm-up (§2.3.1 "long-CoT supervised fine-tuning") and the
``shortest`` long2short method. Loss: mean cross-entropy over the response tokens of each global batch."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from k15 import paths
from k15.chat import THINK_START
from k15.checkpoint import CheckpointInfo, Kind
from k15.config import Config
from k15.models import resolve_model
from train.data import SFTExample, load_sft_examples
from train.deepspeed_setup import DeepSpeedConfig, build_engine, export_hf, load_policy
from train.distributed import all_gather_objects, barrier, init_distributed, rank, world_size
from train.logprobs import pad_batch, token_logprobs
from train.metrics_log import MetricsLogger
from train.state import load_state, save_state

log = logging.getLogger(__name__)


class SFTConfig(Config):
    model: str | None = Field(None, description="the model to fine-tune (default: the embedded default)")
    data: str = Field(description="JSONL of prompt / response rows (responses hold the <think> reasoning)")
    name: str = "long-cot-sft"
    output_dir: str | None = Field(None, description="default: $K15_RUNS/<name>")
    kind: Kind = Kind.long_cot
    method: str = "sft-warmup"
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1, description="examples per optimizer step, over all ranks")
    max_length: int = Field(2048, ge=8)
    deepspeed: DeepSpeedConfig = DeepSpeedConfig(lr=1e-5)
    state_every: int = Field(20, ge=1, description="save the resumable state every N steps")
    keep_states: int = Field(2, ge=1)
    seed: int = 0
    tensorboard: bool = True
    wandb: bool = False

    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else paths.runs_dir() / self.name


def encode_example(tokenizer, example: SFTExample, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of prompt (k15 template, which opens ``<think>``) + response + end of turn, and the loss mask
    (1 on response tokens). A response that repeats the opening ``<think>`` has it removed."""
    messages = [{"role": "user", "content": example.prompt}]
    prompt_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    response = example.response.lstrip()
    response = response[len(THINK_START) :].lstrip("\n") if response.startswith(THINK_START) else response
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + answer)[:max_length]
    mask = ([0] * len(prompt) + [1] * len(answer))[:max_length]
    return ids, mask


class SFTTrainer:
    def __init__(self, config: SFTConfig) -> None:
        self.cfg = config
        self.examples = load_sft_examples(config.data)
        self.run_dir = config.run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        init_distributed()
        self.rank, self.world = rank(), world_size()
        torch.manual_seed(config.seed)
        model_path = resolve_model(config.model)
        self.base_model = str(model_path)
        model, self.tokenizer = load_policy(model_path)
        self.encoded = [encode_example(self.tokenizer, e, config.max_length) for e in self.examples]
        cut = sum(len(ids) == config.max_length for ids, _ in self.encoded)
        if cut and self.rank == 0:
            log.warning("%d of %d examples cut to max_length %d", cut, len(self.encoded), config.max_length)
        self.engine = build_engine(model, config.deepspeed)
        self.steps_per_epoch = math.ceil(len(self.encoded) / config.batch_size)
        self.total = self.steps_per_epoch * config.epochs
        restored = load_state(self.engine, self.run_dir / "state")
        self.step = restored[0]["step"] if restored else 0
        self.resumed = restored is not None
        self.logger = MetricsLogger(self.run_dir, self.total, self.step, self.rank == 0, config.tensorboard,
                                    config.wandb, config.name)  # fmt: skip

    def batch_indices(self, step: int) -> list[int]:
        """The examples of global step ``step``: a seeded shuffle per epoch, so a resumed run sees the same order."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng(self.cfg.seed + epoch).permutation(len(self.encoded))
        size = self.cfg.batch_size
        return [int(i) for i in order[index * size : (index + 1) * size]]

    def train_step(self, step: int) -> dict[str, float]:
        started = time.perf_counter()
        mine = self.batch_indices(step)[self.rank :: self.world]
        micro = self.cfg.deepspeed.micro_batch_size
        batches = [mine[j : j + micro] for j in range(0, len(mine), micro)]
        count = max(1, max(all_gather_objects(len(batches))))
        batches += [[] for _ in range(count - len(batches))]
        tokens = sum(sum(self.encoded[i][1][1:]) for i in mine)
        total_tokens = max(1, sum(all_gather_objects(tokens)))
        loss_sum = 0.0
        for m, batch in enumerate(batches):
            self.engine.set_gradient_accumulation_boundary(m == len(batches) - 1)
            pairs = [self.encoded[i] for i in batch] or [([self.tokenizer.pad_token_id] * 2, [0, 0])]
            ids, attention, mask = pad_batch([p[0] for p in pairs], [p[1] for p in pairs], self.tokenizer.pad_token_id)
            logp, _ = token_logprobs(self.engine, ids, attention)
            nll = -(logp * mask).sum()
            # token-mean over the global batch; DeepSpeed averages over ranks, hence the world-size factor
            self.engine.backward(nll * self.world / total_tokens, scale_wrt_gas=False)
            self.engine.step()
            loss_sum += float(nll)
        seconds = time.perf_counter() - started
        trained = sum(all_gather_objects(sum(len(self.encoded[i][0]) for i in mine)))
        return {
            "loss": sum(all_gather_objects(loss_sum)) / total_tokens,
            "grad_norm": float(self.engine.get_global_grad_norm() or 0.0),
            "lr": float(self.engine.get_lr()[0]),
            "train_tokens_per_s": trained / max(seconds, 1e-9),
            "step_s": seconds,
        }

    def train(self) -> Path:
        cfg = self.cfg
        final = self.run_dir / "final"
        if self.resumed and self.rank == 0:
            print(f"k15 train sft: resuming {self.run_dir} after step {self.step}", flush=True)
        metrics: dict[str, float] = {}
        try:
            while self.step < self.total:
                metrics = self.train_step(self.step)
                self.step += 1
                self.logger.log(self.step, metrics)
                if self.step % cfg.state_every == 0 or self.step == self.total:
                    save_state(self.engine, self.run_dir / "state", self.step, {"step": self.step}, {},
                               cfg.keep_states)  # fmt: skip
            info = CheckpointInfo(kind=cfg.kind, name=cfg.name, base_model=self.base_model, method=cfg.method,
                                  iteration=self.step, metrics=metrics)  # fmt: skip
            if not (final / "k15.json").is_file() or metrics:
                export_hf(self.engine, self.tokenizer, final, info, self.rank == 0)
        finally:
            self.logger.close()
        barrier()
        return final
