"""evalsuite's in-process generation backend: checkpoints on one ``vllm.LLM`` (no server), the endpoint client
being :mod:`k15.client`.

Checkpoints of one architecture share the engine: the next one's weights are loaded into it in memory (the
checkpoint engine of :mod:`k15.weight_sync`) instead of starting an engine per checkpoint (≈ 40 s each on CPU);
a checkpoint of another architecture gets a fresh engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from k15.chat import THINK_END, THINKING_MARKERS, split_reasoning
from k15.checkpoint import read_info, thinks
from k15.client import Completion
from k15.engine import EngineConfig, shutdown
from k15.weight_sync import load_checkpoint, start_engine

# config.json keys that may differ between checkpoints whose weights fit one engine
_NOT_ARCHITECTURE = {"_name_or_path", "torch_dtype", "dtype", "transformers_version", "use_cache"}


def architecture(model_path: Path) -> dict[str, Any]:
    """What of ``config.json`` fixes the shapes and the computation (every key but names, dtype and versions)."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    return {k: v for k, v in config.items() if k not in _NOT_ARCHITECTURE}


class VLLMGenerator:
    """Checkpoints evaluated in-process with ``vllm.LLM``; streams completions as they finish. :meth:`load` makes a
    checkpoint the current one, swapping its weights into the running engine when the architecture matches."""

    def __init__(self, engine: EngineConfig) -> None:
        self.engine = engine
        self.llm: Any = None
        self.path: Path | None = None
        self.thinks = False
        self.chat_template: str | None = None

    def load(self, model_path: Path) -> str:
        """Make ``model_path`` the checkpoint that generates; returns how: "started", "swapped" or "restarted"."""
        from transformers import AutoTokenizer

        model_path = Path(model_path)
        self.thinks = thinks(read_info(model_path))
        self.chat_template = AutoTokenizer.from_pretrained(model_path).chat_template
        if self.llm is not None and self.path is not None and architecture(self.path) == architecture(model_path):
            load_checkpoint(self.llm, model_path)
            self.path, how = model_path, "swapped"
        else:
            how = "started" if self.llm is None else "restarted"
            self.close()
            self.llm = self._start(model_path)
            self.path = model_path
        self.end_id = self.llm.get_tokenizer().convert_tokens_to_ids(THINK_END)
        return how

    def _start(self, model_path: Path) -> Any:
        from vllm.config import ReasoningConfig

        # The think block's markers let a thinking budget cut it, whichever checkpoint is swapped in later.
        kwargs = self.engine.llm_kwargs(model_path)
        return start_engine(model_path, reasoning_config=ReasoningConfig(**THINKING_MARKERS), **kwargs)

    def close(self) -> None:
        if self.llm is not None:
            shutdown(self.llm)
            self.llm = None

    def stream(self, requests: list[tuple[list[dict[str, Any]], dict[str, Any]]]) -> Iterator[tuple[int, Completion]]:
        """Each request's completion (with its index in ``requests``) as soon as it finishes. All requests are queued
        at once, so the engine's batch stays full until the queue drains; fixed waves would each wait for their
        longest sample (1.19–1.55× fewer tokens/s on 200 Countdown prompts, docs/evalsuite.md). Requests still
        running when the caller stops iterating are aborted."""
        from vllm import SamplingParams

        params = [SamplingParams(**{k: v for k, v in p.items() if v is not None}) for _, p in requests]
        ids = self.llm.enqueue_chat([messages for messages, _ in requests], params, use_tqdm=False,
                                    chat_template=self.chat_template)  # fmt: skip
        # enqueue_chat returns vLLM's internal ids ("<id>-<8 random characters>"); outputs carry the <id> part
        index = {request_id.rsplit("-", 1)[0]: i for i, request_id in enumerate(ids)}
        engine, running = self.llm.llm_engine, set(index)
        try:
            while running and engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished and output.request_id in running:
                        running.discard(output.request_id)
                        yield index[output.request_id], self._completion(output.outputs[0])
        finally:
            if running:
                engine.abort_request(list(running))

    def _completion(self, sample: Any) -> Completion:
        """A vLLM ``CompletionOutput`` as a :class:`Completion`, the thinking split from the answer."""
        ids = list(sample.token_ids)
        if not self.thinks:
            return Completion(None, sample.text, sample.finish_reason, len(ids), 0)
        split = split_reasoning(sample.text, think_opened_by_prompt=True)
        reasoning_tokens = ids.index(self.end_id) if self.end_id in ids else len(ids)
        return Completion(split.reasoning, split.answer, sample.finish_reason, len(ids), reasoning_tokens)
