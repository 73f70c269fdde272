"""evalsuite's in-process generation backend: a checkpoint on ``vllm.LLM`` (the endpoint client is
:mod:`k15.client`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k15.chat import THINK_END, split_reasoning
from k15.checkpoint import THINKING_KINDS, read_info
from k15.client import Completion
from k15.engine import EngineConfig


class VLLMGenerator:
    """A checkpoint evaluated in-process with ``vllm.LLM`` (no server); batches whole waves of requests."""

    def __init__(self, model_path: Path, engine: EngineConfig) -> None:
        from vllm import LLM

        info = read_info(model_path)
        self.thinks = bool(info and info.kind in THINKING_KINDS)
        self.llm = LLM(model=str(model_path), **engine.llm_kwargs(model_path))
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
