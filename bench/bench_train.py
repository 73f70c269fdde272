"""Training benchmark (issue: train): rollout, trainer and weight-sync speed, as ratios against baselines measured
in the same process.

1. Rollout: vLLM (the trainer's rollout engine) against Hugging Face ``generate`` on the same prompts and the same
   token budget; target ≥ 3×.
2. Trainer: training tokens/s turned into FLOP/s (6·N per token) against the bf16 matmul peak measured here.
3. Iteration: the share of each RL iteration spent in rollout, log-probs, training and weight sync; target sync ≤ 5%.

    python bench/bench_train.py [--model PATH] [--prompts 32] [--max-tokens 128] [--iterations 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from k15.config import load_config
from k15.train.data.demo_task import make_splits
from k15.train.rl.trainer import RLConfig, RLTrainer


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """bf16 matmul FLOP/s on this machine (best of ``repeats``)."""
    a, b = torch.randn(size, size, dtype=torch.bfloat16), torch.randn(size, size, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def hf_generate_tokens_per_s(trainer: RLTrainer, prompts: list[list[int]], max_tokens: int) -> float:
    model, tokenizer = trainer.engine.module, trainer.tokenizer
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])  # left padding
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=True,
                             temperature=1.0, top_p=1.0, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    seconds = time.perf_counter() - start
    new = out[:, width:]
    generated = int(sum((row != tokenizer.pad_token_id).sum() for row in new))
    return generated / seconds


def vllm_tokens_per_s(trainer: RLTrainer, prompts: list[list[int]], max_tokens: int) -> float:
    start = time.perf_counter()
    segments = trainer.rollout.generate(prompts, [max_tokens] * len(prompts), 1.0, 1.0, list(range(len(prompts))))
    return sum(len(s.token_ids) for s in segments) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the embedded default)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--out", default="docs/bench-train.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="k15-bench-train-"))
    data = make_splits(work / "arith", train=200, heldout=10, sft=10)
    config = {
        "model": args.model, "data": {"path": str(data["train"])}, "output_dir": str(work / "run"),
        "iterations": args.iterations, "prompts_per_iteration": 8, "tensorboard": False, "save_every": 1000,
        "state_every": 1000,
        "rollout": {"k": 4, "max_tokens": args.max_tokens, "engine": {"enforce_eager": True, "max_model_len": 1024}},
        "deepspeed": {"lr": 1e-5, "micro_batch_size": 8},
    }  # fmt: skip
    (work / "rl.yaml").write_text(yaml.safe_dump(config))
    trainer = RLTrainer(load_config(RLConfig, work / "rl.yaml", []))
    prompts = [trainer.prompt_ids(i) for i in range(args.prompts)]

    vllm_tokens_per_s(trainer, prompts[:4], 8)  # warm-up
    rates = {"hf": [], "vllm": []}
    for _ in range(2):  # alternate, so drift in machine load hits both
        rates["vllm"].append(vllm_tokens_per_s(trainer, prompts, args.max_tokens))
        rates["hf"].append(hf_generate_tokens_per_s(trainer, prompts, args.max_tokens))
    peak = matmul_peak()

    rows = []
    for i in range(args.iterations):
        rows.append(trainer.iteration(i))
        trainer.step += 1
    trainer.rollout.close()

    params = sum(p.numel() for p in trainer.engine.module.parameters())
    steady = rows[1:] or rows
    mean = {k: sum(r[k] for r in steady) / len(steady) for k in steady[0]}
    train_flops = 6 * params * mean["train_tokens_per_s"]
    result = {
        "vllm_tokens_per_s": max(rates["vllm"]),
        "hf_generate_tokens_per_s": max(rates["hf"]),
        "rollout_speedup": max(rates["vllm"]) / max(rates["hf"]),
        "train_tokens_per_s": mean["train_tokens_per_s"],
        "train_flops": train_flops,
        "bf16_matmul_peak_flops": peak,
        "train_flops_over_peak": train_flops / peak,
        "iteration_s": mean["iteration_s"],
        **{f"share_{k}": mean[f"{k}_s"] / mean["iteration_s"] for k in ("rollout", "logprob", "train", "sync")},
        "sync_s": mean["sync_s"],
        "params": params,
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:28s} {value:.4g}" if isinstance(value, float) else f"{key:28s} {value}")


if __name__ == "__main__":
    main()
