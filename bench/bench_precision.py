"""Precision benchmark (issue "Fast on every CPU"): how fast each dtype runs on this machine, and what ``auto`` picks.

Measured in one run, so the ratios are fair on a noisy machine:
1. matmul FLOP/s (``torch.mm``, square, all threads) in fp32 and bf16;
2. one plain-PyTorch AdamW training step of the model on ``--batch`` × ``--tokens`` tokens, fp32 and bf16;
3. vLLM generation (eager engine, ``--prompts`` prompts × ``--max-tokens``), fp32 and bf16, each engine in its own
   process.

    python bench/bench_precision.py [--model PATH] [--out docs/bench-precision.json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import common
import torch

from k15.engine import EngineConfig
from k15.models import resolve_model
from k15.precision import describe, native_bf16, resolve

DTYPES = ("float32", "bfloat16")


def synchronize(device: str) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously; the CPU does not)."""
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_flops(
    dtype: torch.dtype,
    size: int = 1024,
    repeats: int = 5,
    device: str = "cpu",
    shape: tuple[int, int, int] | None = None,
) -> float:
    """Best-of-``repeats`` FLOP/s of one ``size``² matmul on ``device`` (``cpu`` or ``cuda``), or of an
    [m × k] @ [k × n] one for ``shape`` = (m, k, n)."""
    m, k, n = shape or (size, size, size)
    a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best


def train_step_seconds(model_path: Path, dtype: torch.dtype, batch: int, tokens: int) -> float:
    """Seconds of the second of two AdamW steps (the first pays allocation and warm-up)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(0))
    seconds = 0.0
    for _ in range(2):
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds = time.perf_counter() - start
    return seconds


def vllm_tokens_per_s(model_path: Path, dtype: str, prompts: int, max_tokens: int) -> float:
    """Generation tokens/s of an eager vLLM engine in ``dtype`` (run in a child process: one engine per process)."""
    engine = EngineConfig(dtype=dtype, enforce_eager=True, max_model_len=1024, gpu_memory_utilization=0.1)
    code = (
        "import json, sys, time\n"
        "from vllm import LLM, SamplingParams\n"
        "if __name__ == '__main__':\n"
        f"    llm = LLM(model={str(model_path)!r}, **{engine.llm_kwargs(model_path)!r})\n"
        f"    params = SamplingParams(temperature=1.0, max_tokens={max_tokens}, ignore_eos=True, seed=0)\n"
        "    llm.generate(['Warm up'], params, use_tqdm=False)\n"
        f"    prompts = [f'Problem {{i}}: add the numbers 3, 5 and {{i}}.' for i in range({prompts})]\n"
        "    start = time.perf_counter()\n"
        "    out = llm.generate(prompts, params, use_tqdm=False)\n"
        "    seconds = time.perf_counter() - start\n"
        "    print('RESULT', json.dumps(sum(len(o.outputs[0].token_ids) for o in out) / seconds))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"vLLM in {dtype} failed:\n{done.stderr[-3000:]}")
    return float(lines[-1].split()[1])


def main() -> None:
    parser = common.parser(__doc__, "docs/bench-precision.json")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    model = resolve_model(args.model)

    result: dict[str, object] = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16()[0],
        "auto_precision": describe("auto"),
        "threads": torch.get_num_threads(),
    }
    print(f"auto precision: {result['auto_precision']}", flush=True)
    for name in DTYPES:
        result[f"matmul_gflops_{name}"] = matmul_flops(getattr(torch, name)) / 1e9
    for name in DTYPES:
        result[f"train_step_s_{name}"] = train_step_seconds(model, getattr(torch, name), args.batch, args.tokens)
        print(f"train step {name}: {result[f'train_step_s_{name}']:.2f} s", flush=True)
    for name in DTYPES:
        result[f"vllm_tokens_per_s_{name}"] = vllm_tokens_per_s(model, name, args.prompts, args.max_tokens)
        print(f"vLLM {name}: {result[f'vllm_tokens_per_s_{name}']:.1f} tokens/s", flush=True)
    result["train_speedup_fp32_over_bf16"] = result["train_step_s_bfloat16"] / result["train_step_s_float32"]
    result["vllm_speedup_fp32_over_bf16"] = result["vllm_tokens_per_s_float32"] / result["vllm_tokens_per_s_bfloat16"]
    fastest_train = "float32" if result["train_speedup_fp32_over_bf16"] > 1 else "bfloat16"
    fastest_vllm = "float32" if result["vllm_speedup_fp32_over_bf16"] > 1 else "bfloat16"
    result["auto_is_fastest_train"] = resolve("auto") == fastest_train
    result["auto_is_fastest_vllm"] = resolve("auto") == fastest_vllm
    result.update(batch=args.batch, tokens=args.tokens, prompts=args.prompts, max_tokens=args.max_tokens)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:32s} {value:.4g}" if isinstance(value, float) else f"{key:32s} {value}")


if __name__ == "__main__":
    main()
