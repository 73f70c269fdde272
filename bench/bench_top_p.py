"""Top-p benchmark: vLLM's CPU nucleus filter (a sort of the whole vocabulary per row and step) against k15's
(``k15/vllm_plugin.py``: the nucleus from the 256 most likely tokens), in the same run, on the same engine.

1. The filter alone on logits of a real decoding step's shape (``--prompts`` rows × the vocabulary).
2. An in-process evaluation (``VLLMGenerator.stream``, as ``evalsuite run --backend vllm``): the demo task's prompts
   at the evaluation's sampling (temperature 0.6, top_p 0.95), one seed per prompt, once with each filter. Both keep
   the same tokens, so the two runs must produce the same samples; the report says whether they did.

    python bench/bench_top_p.py [--model PATH] [--prompts 200] [--max-tokens 512]
"""

from __future__ import annotations

import json
import time
from typing import Any

import common
import torch

from k15 import vllm_plugin
from k15.engine import EngineConfig
from k15.evalsuite.generate import VLLMGenerator
from k15.models import resolve_model
from k15.precision import describe


def filter_ms(apply: Any, logits: torch.Tensor, p: torch.Tensor, repeats: int = 10) -> float:
    apply(logits.clone(), None, p)
    start = time.perf_counter()
    for _ in range(repeats):
        apply(logits.clone(), None, p)
    return (time.perf_counter() - start) / repeats * 1000


def evaluate(generator: VLLMGenerator, requests: list[Any]) -> tuple[dict[str, float], list[str]]:
    start = time.perf_counter()
    done = dict(generator.stream(requests))
    seconds = time.perf_counter() - start
    tokens = sum(c.completion_tokens for c in done.values())
    texts = [f"{done[i].reasoning}\n{done[i].content}" for i in range(len(requests))]
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}, texts


def main() -> None:
    parser = common.parser(__doc__, None)
    common.add_eval_flags(parser)
    args = parser.parse_args()
    model = resolve_model(args.model)
    requests = common.eval_requests(args)
    generator = VLLMGenerator(EngineConfig(enforce_eager=True, max_model_len=1024, gpu_memory_utilization=0.15))
    try:
        generator.load(model)  # vLLM loads k15's plugin with the engine
        from vllm.v1.sample.ops import topk_topp_sampler as sampler

        k15_filter = sampler.apply_top_k_top_p
        assert getattr(k15_filter, "k15", False), "k15's vLLM plugin is not installed (pip install -e .)"
        vllm_filter = k15_filter.__wrapped__
        vocab = generator.llm.get_tokenizer().vocab_size
        logits = torch.randn(min(64, len(requests)), vocab) * 8
        p = torch.full((logits.shape[0],), 0.95)
        filters = {"vllm_ms": filter_ms(vllm_filter, logits, p), "k15_ms": filter_ms(k15_filter, logits, p)}
        list(generator.stream(requests[:4]))  # warm-up
        sampler.apply_top_k_top_p = vllm_filter
        vllm_run, vllm_texts = evaluate(generator, requests)
        sampler.apply_top_k_top_p = k15_filter
        k15_run, k15_texts = evaluate(generator, requests)
    finally:
        generator.close()
    report = {
        "precision": describe("auto"), "model": str(model), "task": args.task, "prompts": len(requests),
        "max_tokens": args.max_tokens, "candidates": vllm_plugin.CANDIDATES,
        "filter": {**filters, "speedup": filters["vllm_ms"] / filters["k15_ms"], "rows": logits.shape[0]},
        "evaluation": {"vllm_top_p": vllm_run, "k15_top_p": k15_run,
                       "speedup": k15_run["tokens_per_s"] / vllm_run["tokens_per_s"],
                       "same_samples": sum(a == b for a, b in zip(vllm_texts, k15_texts, strict=True))},
    }  # fmt: skip
    common.emit(json.dumps(report, indent=2), args.out)


if __name__ == "__main__":
    main()
