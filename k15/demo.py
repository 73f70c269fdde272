"""The main job of ``make demo``: the embedded default answering one chat completion through real vLLM."""

from __future__ import annotations

import time

from pydantic import Field

from k15.config import Config
from k15.models import prepare_default
from serve.config import ServeConfig
from serve.stack import ServingStack


class DemoConfig(Config):
    question: str = "What is the capital of France? Answer in one sentence."
    max_tokens: int = Field(96, gt=0)
    temperature: float = Field(0.0, ge=0)
    serve: ServeConfig = Field(default_factory=ServeConfig)


def run(cfg: DemoConfig) -> int:
    from openai import OpenAI

    start = time.monotonic()
    model_dir = prepare_default()
    print(f"model      {model_dir}  (ready in {time.monotonic() - start:.1f} s)", flush=True)
    cfg.serve.port = 0
    up = time.monotonic()
    with ServingStack(cfg.serve, log=lambda line: None) as stack:
        print(f"engine     vLLM OpenAI server behind {stack.base_url} (up in {time.monotonic() - up:.1f} s)")
        client = OpenAI(base_url=stack.base_url, api_key=cfg.serve.api_key or "unused")
        sent = time.monotonic()
        first_token: float | None = None
        parts: list[str] = []
        usage = None
        stream = client.chat.completions.create(
            model=cfg.serve.names.auto,
            messages=[{"role": "user", "content": cfg.question}],
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    first_token = first_token or time.monotonic()
                    parts.append(choice.delta.content)
        total = time.monotonic() - sent
    print(f"question   {cfg.question}")
    print(f"answer     {''.join(parts).strip()}")
    if usage:
        print(f"tokens     {usage.prompt_tokens} prompt + {usage.completion_tokens} completion")
    ttft = f"{first_token - sent:.2f} s" if first_token else "n/a"
    print(f"seconds    {total:.2f} total, first token after {ttft}", flush=True)
    return 0 if parts else 1
