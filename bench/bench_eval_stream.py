"""In-process evaluation benchmark: every request queued on the engine at once, each sample taken as it finishes
(``VLLMGenerator.stream``, what ``evalsuite run --backend vllm`` does), against the fixed waves it replaced (the
next wave starts when the longest sample of the last one ends), in the same run, on the same engine.

The prompts are the demo task's (Countdown by default) as its evalsuite task writes them, sampled at the
evaluation's temperature with one seed per prompt, so both runs do nearly the same work; the report gives
tokens/s of each and their ratio.

    python bench/bench_eval_stream.py [--model PATH] [--prompts 200] [--max-tokens 512] [--wave 32]
"""

from __future__ import annotations

import json
import time
from typing import Any

import common

from k15.engine import EngineConfig
from k15.evalsuite.generate import VLLMGenerator
from k15.models import resolve_model
from k15.precision import describe

Request = tuple[list[dict[str, Any]], dict[str, Any]]


def timed(generator: VLLMGenerator, requests: list[Request], wave: int | None) -> dict[str, float]:
    """Tokens/s of ``requests``: all queued at once (``wave`` None) or ``wave`` at a time, each wave drained."""
    waves = [requests] if wave is None else [requests[i : i + wave] for i in range(0, len(requests), wave)]
    start, tokens = time.perf_counter(), 0
    for chunk in waves:
        tokens += sum(completion.completion_tokens for _, completion in generator.stream(chunk))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}


def main() -> None:
    parser = common.parser(__doc__, None)
    common.add_eval_flags(parser)
    parser.add_argument("--wave", type=int, default=32, help="the baseline's wave size (the old default concurrency)")
    args = parser.parse_args()
    model = resolve_model(args.model)
    engine = EngineConfig(enforce_eager=True, max_model_len=1024, gpu_memory_utilization=0.15)
    requests: list[Request] = common.eval_requests(args)
    generator = VLLMGenerator(engine)
    try:
        generator.load(model)
        timed(generator, requests[:4], None)  # warm-up
        waves = timed(generator, requests, args.wave)
        queued = timed(generator, requests, None)
    finally:
        generator.close()
    report = {
        "precision": describe("auto"), "model": str(model), "task": args.task, "prompts": len(requests),
        "max_tokens": args.max_tokens, "max_num_seqs": engine.max_num_seqs,
        f"waves_of_{args.wave}": waves, "all_queued": queued,
        "speedup": queued["tokens_per_s"] / waves["tokens_per_s"],
    }  # fmt: skip
    common.emit(json.dumps(report, indent=2), args.out)


if __name__ == "__main__":
    main()
