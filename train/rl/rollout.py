"""Rollouts through vLLM: one engine per trainer rank, started from the policy's checkpoint and kept in step
with the trainer by in-memory weight sync (:mod:`k15.weight_sync`). Prompts with images go in as vLLM's
multimodal inputs: token ids with one placeholder per image, which vLLM expands, and the images."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from k15.config import Config
from k15.engine import EngineConfig, shutdown
from k15.train.runtime.distributed import without_launcher_env
from k15.weight_sync import push_weights, start_engine

log = logging.getLogger(__name__)


class RolloutConfig(Config):
    """Sampling for RL. ``segment_tokens`` turns partial rollouts on: each trajectory generates at most that many
    tokens per iteration and continues in the next one, up to ``max_tokens`` in all (§2.6.2)."""

    k: int = Field(8, ge=2, description="samples per prompt (the group whose mean reward is the baseline)")
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)
    segment_tokens: int | None = Field(None, ge=1)
    repetition_stop: bool = True
    repetition_penalty: float = Field(0.0, ge=0, description="subtracted from the reward of a looping response")
    engine: EngineConfig = EngineConfig()


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as a user turn in the k15 template, ending with the generation prompt (which opens
    ``<think>``): the context every k15 rollout and training example starts from."""
    messages = [{"role": "user", "content": text}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class Segment:
    token_ids: list[int]
    finish_reason: str | None


@dataclass(frozen=True)
class Images:
    """A context's images (Pillow images, in placeholder order) and the tokens vLLM adds expanding their
    placeholders."""

    pictures: list[Any]
    extra_tokens: int


class RolloutEngine:
    """A ``vllm.LLM`` generating from token ids, with the trainer's weights pushed in after each iteration.
    ``banned_token_ids`` are never sampled (a vision model's image placeholders)."""

    def __init__(self, model_path: Path, engine: EngineConfig, banned_token_ids: Sequence[int] = ()) -> None:
        self.max_model_len = engine.max_model_len
        self.logit_bias = {int(t): -100.0 for t in banned_token_ids} or None  # vLLM's lowest bias
        with without_launcher_env():
            kwargs = engine.llm_kwargs(model_path)
            self.llm = start_engine(model_path, **kwargs)

    def generate(
        self, contexts: Sequence[list[int]], max_tokens: Sequence[int], temperature: float, top_p: float,
        seeds: Sequence[int], images: Sequence[Images | None] = (),
    ) -> list[Segment]:  # fmt: skip
        """One continuation per context (``images[i]``: context i's, if any); ``max_tokens`` is clipped to what fits
        in the model's context."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, params = [], []
        for i, (context, budget, seed) in enumerate(zip(contexts, max_tokens, seeds, strict=True)):
            pictures = images[i] if images else None
            length = len(context) + (pictures.extra_tokens if pictures else 0)
            room = self.max_model_len - length
            if room < 1:
                raise ValueError(
                    f"a context of {length} tokens leaves no room in max_model_len {self.max_model_len}; "
                    "raise rollout.engine.max_model_len or lower rollout.max_tokens"
                )
            prompt = TokensPrompt(prompt_token_ids=list(context))
            if pictures:
                prompt["multi_modal_data"] = {"image": pictures.pictures}
            prompts.append(prompt)
            params.append(SamplingParams(temperature=temperature, top_p=top_p, max_tokens=min(budget, room),
                                         seed=seed, skip_special_tokens=False, logit_bias=self.logit_bias))  # fmt: skip
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [Segment(list(o.outputs[0].token_ids), o.outputs[0].finish_reason) for o in outputs]

    def push(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        """Load the trainer's weights into the running engine; returns the seconds it took."""
        return push_weights(self.llm, state_dict)

    def close(self) -> None:
        shutdown(self.llm)
