"""A client for any OpenAI-compatible endpoint (k15 serve, vLLM, a hosted API): chat completions with retries,
returned as :class:`Completion` with the reasoning split from the answer. Used by evaluation and by training's
teacher traces."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from k15.chat import THINK_END


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


# sampling parameters that vLLM (and k15 serve) take beyond the OpenAI API: sent in the request's extra body
EXTRA_BODY_PARAMS = ("thinking_token_budget",)


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

        extra = {k: params[k] for k in EXTRA_BODY_PARAMS if params.get(k) is not None}
        openai_params = {k: v for k, v in params.items() if k not in EXTRA_BODY_PARAMS}
        if extra:
            openai_params["extra_body"] = extra
        for attempt in range(self.retries + 1):
            try:
                reply = await self.client.chat.completions.create(model=model, messages=messages, **openai_params)
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
