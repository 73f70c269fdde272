"""Generation backends for evalsuite: any OpenAI-compatible endpoint, or a checkpoint in-process on vLLM."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k15.chat import THINK_END, split_reasoning
from k15.checkpoint import Kind, read_info
from k15.engine import EngineConfig


@dataclass(frozen=True)
class Completion:
    """One generated sample: ``reasoning`` is None when the model (or server) does not separate thinking."""

    reasoning: str | None
    content: str
    finish_reason: str | None
    completion_tokens: int
    reasoning_tokens: int

    def graded_text(self) -> tuple[str, bool]:
        """The raw text for the grader and whether the prompt opened the think block (see k15.chat)."""
        if self.reasoning is None:
            return self.content, False
        return self.reasoning + (THINK_END + self.content if self.content else ""), True


class EndpointGenerator:
    """Chat completions from an OpenAI-compatible server, with retries and exponential back-off."""

    RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float, retries: int) -> None:
        from openai import AsyncOpenAI

        self.base_url = base_url.rstrip("/")
        self.client = AsyncOpenAI(base_url=self.base_url, api_key=api_key or "unused", max_retries=0, timeout=timeout_s)
        self.retries = retries

    async def served_models(self) -> list[dict[str, Any]]:
        return [m.model_dump() for m in (await self.client.models.list()).data]

    async def complete(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Completion:
        import openai

        for attempt in range(self.retries + 1):
            try:
                reply = await self.client.chat.completions.create(model=model, messages=messages, **params)
                break
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                if attempt == self.retries or (status is not None and status not in self.RETRYABLE_STATUS):
                    raise
                await asyncio.sleep(min(30.0, 2.0**attempt) * (0.5 + random.random()))
        choice = reply.choices[0]
        extra = choice.message.model_extra or {}
        reasoning = extra.get("reasoning") or extra.get("reasoning_content")
        details = reply.usage.completion_tokens_details if reply.usage else None
        return Completion(
            reasoning=reasoning,
            content=choice.message.content or "",
            finish_reason=choice.finish_reason,
            completion_tokens=reply.usage.completion_tokens if reply.usage else 0,
            reasoning_tokens=(details.reasoning_tokens or 0) if details else 0,
        )

    async def close(self) -> None:
        await self.client.close()


class VLLMGenerator:
    """A checkpoint evaluated in-process with ``vllm.LLM`` (no server); batches whole waves of requests."""

    def __init__(self, model_path: Path, engine: EngineConfig) -> None:
        from vllm import LLM

        info = read_info(model_path)
        self.thinks = bool(info and info.kind in (Kind.long_cot, Kind.long2short))
        self.llm = LLM(model=str(model_path), **engine.llm_kwargs())
        self.end_id = self.llm.get_tokenizer().convert_tokens_to_ids(THINK_END)

    def complete_batch(self, requests: list[tuple[list[dict[str, Any]], dict[str, Any]]]) -> list[Completion]:
        from vllm import SamplingParams

        params = [SamplingParams(**{k: v for k, v in p.items() if v is not None}) for _, p in requests]
        outputs = self.llm.chat([messages for messages, _ in requests], params, use_tqdm=False)
        completions = []
        for output in outputs:
            sample = output.outputs[0]
            ids = list(sample.token_ids)
            if not self.thinks:
                completions.append(Completion(None, sample.text, sample.finish_reason, len(ids), 0))
                continue
            split = split_reasoning(sample.text, think_opened_by_prompt=True)
            reasoning_tokens = ids.index(self.end_id) if self.end_id in ids else len(ids)
            completions.append(
                Completion(split.reasoning, split.answer, sample.finish_reason, len(ids), reasoning_tokens)
            )
        return completions
