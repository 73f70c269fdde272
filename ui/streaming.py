"""One streamed answer from the k15 endpoint, tracked for display: thinking, answer, tokens and timings."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gradio import ChatMessage


@dataclass
class Turn:
    """The state of one streaming reply; updated by :func:`stream_into` from a worker thread."""

    model: str
    started: float = field(default_factory=time.monotonic)
    reasoning: str = ""
    answer: str = ""
    reasoning_tokens: int = 0
    answer_tokens: int = 0
    first_token: float | None = None
    thinking_ended: float | None = None
    finished: float | None = None
    error: str | None = None

    def messages(self) -> list[ChatMessage]:
        """The reply as Gradio chat messages: a collapsible thought (Gradio's metadata title), then the answer."""
        now = self.finished or time.monotonic()
        out = []
        if self.reasoning:
            thinking_done = self.thinking_ended is not None or self.finished is not None
            seconds = (self.thinking_ended or now) - (self.first_token or self.started)
            title = f"Thought for {seconds:.1f} s · {self.reasoning_tokens} tokens" if thinking_done else "Thinking…"
            status = "done" if thinking_done else "pending"
            out.append(ChatMessage(self.reasoning, metadata={"title": title, "status": status}))
        if self.error:
            out.append(ChatMessage(f"⚠️ {self.error}"))
        elif self.answer or self.finished:
            out.append(ChatMessage(self.answer or "*(no answer: the thinking used the whole token budget)*"))
        return out

    def stats(self) -> str:
        ttft = f"{self.first_token - self.started:.2f} s" if self.first_token else "–"
        total = f"{(self.finished or time.monotonic()) - self.started:.1f} s"
        state = "done" if self.finished else "generating…"
        return (f"**{self.model}** · reasoning {self.reasoning_tokens} tok · answer {self.answer_tokens} tok · "
                f"first token {ttft} · total {total} · {state}")  # fmt: skip


def stream_into(client: Any, turn: Turn, messages: list[dict[str, Any]], params: dict[str, Any],
                stop: threading.Event) -> None:  # fmt: skip
    """Stream a chat completion into ``turn``; closing the stream on ``stop`` cancels the generation upstream."""
    try:
        stream = client.chat.completions.create(
            model=turn.model, messages=messages, stream=True, stream_options={"include_usage": True}, **params
        )
        with stream:
            for chunk in stream:
                if stop.is_set():
                    break
                if chunk.usage:
                    details = chunk.usage.completion_tokens_details
                    turn.reasoning_tokens = (details.reasoning_tokens or 0) if details else turn.reasoning_tokens
                    turn.answer_tokens = chunk.usage.completion_tokens - turn.reasoning_tokens
                for choice in chunk.choices:
                    extra = choice.delta.model_extra or {}
                    thought = extra.get("reasoning_content") or extra.get("reasoning")
                    if thought or choice.delta.content:
                        turn.first_token = turn.first_token or time.monotonic()
                    if thought:
                        turn.reasoning += thought
                        turn.reasoning_tokens += 1
                    if choice.delta.content:
                        if turn.reasoning and turn.thinking_ended is None:
                            turn.thinking_ended = time.monotonic()
                        turn.answer += choice.delta.content
                        turn.answer_tokens += 1
    except Exception as exc:  # shown in the page, never a traceback
        turn.error = _readable(exc)
    finally:
        turn.finished = time.monotonic()


def _readable(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return f"{message} ({getattr(exc, 'status_code', '')})"
    if type(exc).__name__ == "APIConnectionError":
        return "cannot reach the model server — is `k15 serve` running?"
    return f"{type(exc).__name__}: {exc}"
