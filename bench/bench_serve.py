"""Router overhead: ``k15 serve``'s router against bare vLLM on the same engine, in one run.

Every request streams ``--tokens`` tokens (ignore_eos) from the same vLLM server, once through the router and once
directly; the two paths alternate in rounds so machine noise hits both. Prints p50/p95 latency, time to first
token and throughput at each concurrency, and the router ÷ bare ratios (targets: latency ≤ 1.05, throughput ≥ 0.95).

    python bench/bench_serve.py [--model PATH] [--concurrency 1 8 32] [--tokens 64] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import asyncio
import statistics
import time

import common
import httpx

from k15.config import load_config
from k15.serve.config import ServeConfig
from k15.serve.stack import ServingStack


async def one_request(client: httpx.AsyncClient, url: str, model: str, tokens: int) -> tuple[float, float]:
    body = {"model": model, "messages": [{"role": "user", "content": "Count to one hundred."}],
            "max_tokens": tokens, "ignore_eos": True, "temperature": 0, "stream": True}  # fmt: skip
    start = time.perf_counter()
    first = 0.0
    async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not first and line.startswith("data: {") and '"content":"' in line:
                first = time.perf_counter() - start
    return time.perf_counter() - start, first


async def load(url: str, model: str, concurrency: int, requests: int, tokens: int) -> dict[str, float]:
    """``requests`` streamed requests, ``concurrency`` at a time; latency percentiles and tokens/s."""
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def gated() -> tuple[float, float]:
            async with gate:
                return await one_request(client, url, model, tokens)

        start = time.perf_counter()
        results = await asyncio.gather(*(gated() for _ in range(requests)))
        wall = time.perf_counter() - start
    latencies = sorted(r[0] for r in results)
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[max(0, round(0.95 * len(latencies)) - 1)],
        "ttft": statistics.median(r[1] for r in results),
        "tps": requests * tokens / wall,
    }


def merge(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = common.parser(__doc__, None, model_default="default")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    cfg = load_config(ServeConfig, None, [f"long={args.model}", f"short={args.model}", "port=0",
                                          "engine.enforce_eager=true", "engine.max_model_len=1024"])  # fmt: skip
    with ServingStack(cfg, log=lambda line: None) as stack:
        backend = stack.backends[cfg.names.short]
        paths = {"router": stack.base_url, "bare": f"{backend.base_url}/v1"}
        asyncio.run(load(paths["bare"], cfg.names.short, 4, 8, args.tokens))  # warm-up
        rows = []
        for concurrency in args.concurrency:
            requests = max(4, concurrency * 2)
            runs: dict[str, list[dict[str, float]]] = {"router": [], "bare": []}
            for round_ in range(args.rounds):
                order = ("router", "bare") if round_ % 2 == 0 else ("bare", "router")
                for path in order:
                    runs[path].append(
                        asyncio.run(load(paths[path], cfg.names.short, concurrency, requests, args.tokens))
                    )
            router, bare = merge(runs["router"]), merge(runs["bare"])
            rows.append((concurrency, router, bare))
            print(f"concurrency {concurrency}: router p50 {router['p50']:.3f}s bare {bare['p50']:.3f}s", flush=True)

    lines = [
        "# Router overhead: k15 serve's router ÷ bare vLLM (bench/bench_serve.py)",
        "",
        f"model: {args.model}, {args.tokens} streamed tokens per request, {args.rounds} alternating rounds "
        "(medians), 2·concurrency requests per round",
        "",
        "| streams | p50 router / bare (s) | p95 router / bare (s) | TTFT router / bare (s) | tok/s router / bare "
        "| p50 ratio | p95 ratio | throughput ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency, r, b in rows:
        lines.append(
            f"| {concurrency} | {r['p50']:.3f} / {b['p50']:.3f} | {r['p95']:.3f} / {b['p95']:.3f} "
            f"| {r['ttft']:.3f} / {b['ttft']:.3f} | {r['tps']:.0f} / {b['tps']:.0f} "
            f"| {r['p50'] / b['p50']:.3f} | {r['p95'] / b['p95']:.3f} | {r['tps'] / b['tps']:.3f} |"
        )
    table = "\n".join(lines)
    common.emit(table, args.out)


if __name__ == "__main__":
    main()
