"""Engine benchmark (issue: fast on every CPU): vLLM's engine in the calling process (the uni-process executor,
``engine.in_process``) against vLLM's spawned engine-core and worker processes, in the same run.

1. ``vllm.LLM`` (rollouts, in-process evaluation): seconds to start, and decode tokens/s of one batch.
2. The OpenAI server (``k15 serve``): seconds until ``/health`` answers, and tokens/s of concurrent requests.

    python bench/bench_engine.py [--model PATH] [--prompts 32] [--max-tokens 128]
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import httpx
import torch

from k15.engine import EngineConfig, shutdown
from k15.models import resolve_model
from k15.precision import describe
from k15.serve.vllm_server import VLLMServer
from k15.weight_sync import start_engine

PROMPT = "Write a short story about the number {}."


def llm_run(model: Path, engine: EngineConfig, prompts: int, max_tokens: int) -> dict[str, float]:
    from vllm import SamplingParams

    start = time.perf_counter()
    llm = start_engine(model, **engine.llm_kwargs(model))
    started = time.perf_counter() - start
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=1.0, seed=0)
    llm.generate([PROMPT.format(0)], params, use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outputs = llm.generate([PROMPT.format(i) for i in range(prompts)], params, use_tqdm=False)
    seconds = time.perf_counter() - start
    shutdown(llm)
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"start_s": started, "decode_tokens_per_s": tokens / seconds}


def server_run(model: Path, engine: EngineConfig, prompts: int, max_tokens: int) -> dict[str, float]:
    server = VLLMServer(model, "bench", engine)
    server.start()
    try:
        started = server.wait_healthy()

        def complete(i: int) -> int:
            body = {"model": "bench", "prompt": PROMPT.format(i), "max_tokens": max_tokens, "ignore_eos": True}
            response = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=600)
            response.raise_for_status()
            return response.json()["usage"]["completion_tokens"]

        complete(0)  # warm-up
        start = time.perf_counter()
        with ThreadPoolExecutor(prompts) as pool:
            tokens = sum(pool.map(complete, range(prompts)))
        seconds = time.perf_counter() - start
    finally:
        server.stop()
    return {"start_s": started, "decode_tokens_per_s": tokens / seconds}


def main() -> None:
    parser = common.parser(__doc__, None)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    model = resolve_model(args.model)
    settings = {"enforce_eager": True, "max_model_len": 1024, "gpu_memory_utilization": 0.1}
    report: dict[str, object] = {"precision": describe("auto"), "threads": torch.get_num_threads(), "model": str(model)}
    for name, run in (("llm", llm_run), ("server", server_run)):
        # spawned first: an engine in process leaves vLLM's patches in this process
        spawned = run(model, EngineConfig(in_process=False, **settings), args.prompts, args.max_tokens)
        in_process = run(model, EngineConfig(in_process=True, **settings), args.prompts, args.max_tokens)
        report[name] = {
            "spawned": spawned,
            "in_process": in_process,
            "start_speedup": spawned["start_s"] / in_process["start_s"],
            "decode_speedup": in_process["decode_tokens_per_s"] / spawned["decode_tokens_per_s"],
        }
    common.emit(json.dumps(report, indent=2), args.out)


if __name__ == "__main__":
    main()
