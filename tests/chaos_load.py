"""Load with disconnects: concurrent streaming clients against ``k15 serve`` on the embedded default, a third of
them hanging up at a random point of each stream.

Figures: completed streams that are not well-formed (no ``[DONE]``, usage at odds with the content), vLLM's
running requests after the last client (must be 0 within 2 s), the router's open file descriptors and memory at
the end against their level after the warm-up (within 10 %), and every log line that is not expected.

    python -m tests.chaos_load                      # 64 clients, 5 minutes (plus ~1 min start)
    python -m tests.chaos_load --clients 16 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import ServeProcess

PROMPTS = ["What is 17 * 23?", "Name three prime numbers.", "Explain recursion in one paragraph.",
           "Write a haiku about rivers.", "How many days are in a leap year?", "Solve 2x + 3 = 11."]  # fmt: skip
UNEXPECTED = re.compile(r"Traceback|Error|ERROR|Exception|exception|CRITICAL|died|restarting")
# vLLM's start-up note that the machine's hard limit on open files is below what it would like.
EXPECTED = re.compile(r"Found ulimit of \d+ and failed to automatically increase")


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.malformed: list[str] = []
        self.last_end = 0.0


async def one_stream(client: httpx.AsyncClient, url: str, hang_up: bool, rng: random.Random, tally: Tally) -> None:
    max_tokens = rng.randint(16, 256)
    body = {"model": "k15-long", "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
            "max_tokens": max_tokens, "temperature": 0.8, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    cut = rng.randint(1, max_tokens) if hang_up else None
    events: list[str] = []
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                tally.counts[f"status {response.status_code}"] += 1
                tally.malformed.append(f"status {response.status_code}: {(await response.aread())[:200]!r}")
                return
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                if cut is not None and len(events) >= cut and events[-1] != "[DONE]":
                    tally.counts["hung up"] += 1
                    return  # leaving the block closes the connection mid-stream
    except httpx.HTTPError as exc:
        tally.counts["client error"] += 1
        tally.malformed.append(f"{type(exc).__name__}: {exc}")
        return
    finally:
        tally.last_end = time.monotonic()
    problem = check_stream(events, max_tokens)
    tally.counts["completed" if problem is None else "malformed"] += 1
    if problem:
        tally.malformed.append(problem)


def check_stream(events: list[str], max_tokens: int) -> str | None:
    """Why a completed stream is not well-formed, or None: it ends with ``[DONE]``; every chunk is JSON with both
    reasoning fields on its deltas; the usage chunk adds up (prompt + completion = total, at most ``max_tokens``
    completion tokens, exactly that many when cut by length, no more content chunks than completion tokens)."""
    if not events or events[-1] != "[DONE]":
        return f"no [DONE] at the end (last event {events[-1][:80] if events else None!r})"
    chunks = [json.loads(e) for e in events[:-1]]
    if any("error" in c for c in chunks):
        return f"error event: {next(c for c in chunks if 'error' in c)}"
    deltas = [c["choices"][0] for c in chunks if c.get("choices")]
    if any("reasoning" not in d["delta"] or "reasoning_content" not in d["delta"] for d in deltas):
        return "a delta without reasoning / reasoning_content"
    usage = chunks[-1].get("usage")
    if not usage:
        return "no usage chunk"
    completion = usage["completion_tokens"]
    finish = next((d["finish_reason"] for d in reversed(deltas) if d.get("finish_reason")), None)
    content_chunks = sum(bool(d["delta"].get("content") or d["delta"].get("reasoning")) for d in deltas)
    if usage["prompt_tokens"] + completion != usage["total_tokens"] or completion > max_tokens:
        return f"usage does not add up: {usage}"
    if finish == "length" and completion != max_tokens:
        return f"finish_reason length with {completion} of {max_tokens} tokens"
    if content_chunks > completion:
        return f"{content_chunks} content chunks for {completion} completion tokens"
    return None


async def client_loop(base_url: str, index: int, deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed * 1000 + index)
    hang_up = index % 3 == 0  # a third of the clients disconnect mid-stream
    timeout = httpx.Timeout(300, connect=30)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=1)) as client:
        while time.monotonic() < deadline:
            await one_stream(client, f"{base_url}/chat/completions", hang_up, rng, tally)


def running_requests(backend_url: str) -> float:
    text = httpx.get(f"{backend_url.removesuffix('/v1')}/metrics", timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("vllm:num_requests_running")]
    return sum(values)


def router_statuses(server: ServeProcess) -> dict[str, int]:
    """The router's own count of chat requests by status (499: the client went away)."""
    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("k15_requests_total{") and "chat/completions" in line:
            counts[re.search(r'status="(\d+)"', line).group(1)] += int(float(line.split()[-1]))  # type: ignore[union-attr]
    return dict(counts)


def router_usage(pid: int) -> tuple[int, float]:
    process = psutil.Process(pid)
    return process.num_fds(), process.memory_info().rss / 2**20


async def drive(server: ServeProcess, clients: int, seconds: float, seed: int) -> dict[str, Any]:
    health = httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=10).json()
    backend_urls = sorted({b["url"] for b in health["models"].values()})
    tally = Tally()
    warm = time.monotonic() + min(30.0, seconds / 5)
    deadline = time.monotonic() + seconds
    tasks = [asyncio.create_task(client_loop(server.base_url, i, deadline, tally, seed)) for i in range(clients)]
    await asyncio.sleep(max(0.0, warm - time.monotonic()))
    fds_warm, rss_warm = router_usage(server.proc.pid)
    await asyncio.gather(*tasks)
    drained, waited = False, 0.0
    while waited <= 10:
        if all(running_requests(u) == 0 for u in backend_urls):
            drained = True
            break
        await asyncio.sleep(0.1)
        waited = time.monotonic() - tally.last_end
    drain_s = time.monotonic() - tally.last_end
    await asyncio.sleep(2)
    fds_end, rss_end = router_usage(server.proc.pid)
    counted = router_statuses(server)
    return {"backend_urls": backend_urls, "clients": clients, "seconds": seconds, "requests": sum(tally.counts.values()), **tally.counts,
            "malformed_examples": tally.malformed[:5], "vllm_running_zero": drained,
            "vllm_drained_s": round(drain_s, 2), "router_fds_warm": fds_warm, "router_fds_end": fds_end,
            "router_rss_mb_warm": round(rss_warm, 1), "router_rss_mb_end": round(rss_end, 1),
            "router_counted": counted}  # fmt: skip


def unexpected_log_lines(server: ServeProcess, since: int, backend_ports: list[int]) -> list[str]:
    """Lines of the router's output (from ``since``) and of the engines' logs that signal a problem."""
    from k15 import paths

    lines = server.lines[since:]
    for log in paths.logs_dir().glob("vllm-*.log"):
        if any(log.name.endswith(f"-{port}.log") for port in backend_ports):
            lines += log.read_text(errors="replace").splitlines()
    return [line.strip() for line in lines if UNEXPECTED.search(line) and not EXPECTED.search(line)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    from k15.models import prepare_default

    model = prepare_default(progress=False)
    server = ServeProcess(["--long", str(model), "--short", str(model), "--set", "engine.enforce_eager=true",
                           "--set", "engine.max_model_len=1024"])  # fmt: skip
    try:
        started_lines = len(server.lines)
        figures = asyncio.run(drive(server, args.clients, args.seconds, args.seed))
        ports = [httpx.URL(u).port for u in figures["backend_urls"]]
        figures["unexpected_log_lines"] = unexpected_log_lines(server, started_lines, ports)[:20]
    finally:
        figures_rc = server.stop()
    figures["serve_exit"] = figures_rc
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    counted = figures["router_counted"]
    held = (figures.get("malformed", 0) == 0 and not figures.get("client error") and figures["vllm_running_zero"]
            # a client may hang up after the router sent the whole stream: the router counts that one as a 200
            and counted.get("200", 0) + counted.get("499", 0) == figures["requests"]
            and counted.get("499", 0) <= figures.get("hung up", 0)
            and figures["vllm_drained_s"] <= 2 and figures["router_fds_end"] <= 1.1 * figures["router_fds_warm"]
            and figures["router_rss_mb_end"] <= 1.1 * figures["router_rss_mb_warm"]
            and not figures["unexpected_log_lines"])  # fmt: skip
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
