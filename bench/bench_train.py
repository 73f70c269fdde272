"""Training benchmark (issue: train): rollout, trainer and weight-sync speed, as ratios against baselines measured
in the same process.

1. Rollout: vLLM (the trainer's rollout engine) against Hugging Face ``generate`` at its best — a plain HF model in
   the same precision with its KV cache, batched like the rollouts, same prompts and token budget; target ≥ 3×.
2. Trainer: training tokens/s turned into FLOP/s (6·N per token) against the matmul peak, measured here, of the
   precision it trains in (``dtype: auto``: bf16 with native bf16, else fp32; a 2048² matmul, and the model's own
   MLP matmul at a micro-batch's tokens, which says how much of that peak this model's widths can reach), and
   against a plain PyTorch AdamW loop (no DeepSpeed) on the same model, sequences, micro-batches and precision: the
   median over ``--rounds`` of the two timed alternately on the last iteration's samples (the ratio within the
   iterations is reported too).
3. Iteration: the share of each RL iteration spent in rollout, log-probs, training and weight sync; target sync ≤ 5%.

    python bench/bench_train.py [--model PATH] [--task arith|countdown] [--levels 1,2] [--prompts 32]
                                [--max-tokens 128] [--iterations 3]

The untrained default answers the arithmetic prompts in a few tokens; a warm-up checkpoint that thinks
(``--model RUN/sft/final --task countdown --levels 1,2 --max-tokens 256``) trains on sequences of realistic length.
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import torch
import yaml
from bench_precision import matmul_flops

from k15.config import load_config
from k15.precision import describe, torch_dtype
from k15.train.rl.trainer import RLConfig, RLTrainer
from k15.train.runtime.logprobs import sequence_logprobs


def plain_model(trainer: RLTrainer, work: Path) -> Any:
    """The policy as a plain Hugging Face model in the trainer's precision (no DeepSpeed wrapper)."""
    from transformers import AutoModelForCausalLM

    trainer.engine.module.save_pretrained(work / "plain")
    return AutoModelForCausalLM.from_pretrained(work / "plain", dtype=torch_dtype(trainer.cfg.deepspeed.dtype))


def hf_generate_tokens_per_s(model: Any, tokenizer: Any, prompts: list[list[int]], max_tokens: int) -> float:
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


def plain_train_tokens_per_s(trainer: RLTrainer, model: Any, samples: list[dict[str, Any]]) -> float:
    """Training tokens/s of a plain PyTorch AdamW loop on the same sequences, cut into the trainer's own
    micro-batches (sorted by length, so both pad alike), with the same loss terms."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)  # the trainer's AdamW kernel on CPU
    start = time.perf_counter()
    for batch in trainer.micro_batches(samples, lambda s: len(s["ids"])):
        logp, _, _ = sequence_logprobs(model, [s["ids"] for s in batch], [s["mask"] for s in batch], trainer.pad_id)
        (-(logp * torch.tensor([s["advantage"] for s in batch], dtype=logp.dtype)).sum() / len(samples)).backward()
    optimizer.step()
    optimizer.zero_grad()
    return sum(len(s["ids"]) for s in samples) / (time.perf_counter() - start)


def vllm_tokens_per_s(trainer: RLTrainer, prompts: list[list[int]], max_tokens: int) -> float:
    start = time.perf_counter()
    segments = trainer.rollout.generate(prompts, [max_tokens] * len(prompts), 1.0, 1.0, list(range(len(prompts))))
    return sum(len(s.token_ids) for s in segments) / (time.perf_counter() - start)


def main() -> None:
    parser = common.parser(__doc__, "docs/bench-train.json")
    common.add_prompt_flags(parser)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="repeats of the paired trainer/plain-loop timing")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="k15-bench-train-"))
    data = common.demo_prompts(args, work)
    config = {
        "model": args.model, "data": {"path": str(data)}, "output_dir": str(work / "run"),
        "iterations": args.iterations, "prompts_per_iteration": 8, "tensorboard": False, "save_every": 1000,
        "state_every": 1000,
        "rollout": {"k": 4, "max_tokens": args.max_tokens, "engine": {"enforce_eager": True, "max_model_len": 1024}},
        "deepspeed": {"lr": 1e-5, "micro_batch_size": 8},
    }  # fmt: skip
    (work / "rl.yaml").write_text(yaml.safe_dump(config))
    trainer = RLTrainer(load_config(RLConfig, work / "rl.yaml", []))
    prompts = [trainer.prompt_ids(i) for i in range(args.prompts)]
    precision = trainer.cfg.deepspeed.dtype
    print(f"bench-train: training precision {describe(precision)}", flush=True)
    plain = plain_model(trainer, work)

    vllm_tokens_per_s(trainer, prompts[:4], 8)  # warm-up
    rates = {"hf": [], "vllm": []}
    for _ in range(2):  # alternate, so drift in machine load hits both
        rates["vllm"].append(vllm_tokens_per_s(trainer, prompts, args.max_tokens))
        rates["hf"].append(hf_generate_tokens_per_s(plain, trainer.tokenizer, prompts, args.max_tokens))
    peak = matmul_flops(torch_dtype(precision), size=2048)
    # The model's own largest matmul (MLP up-projection: tokens × hidden × intermediate) at a micro-batch of
    # max-length responses: how far the 2048² peak is reachable at all with this model's widths.
    model_config = trainer.engine.module.config
    layer_shape = (trainer.cfg.deepspeed.micro_batch_size * args.max_tokens, model_config.hidden_size,
                   model_config.intermediate_size)  # fmt: skip
    layer_peak = matmul_flops(torch_dtype(precision), shape=layer_shape)

    trained: list[list[dict[str, Any]]] = []  # each iteration's samples, for the plain-PyTorch baseline
    update = trainer.update
    trainer.update = lambda samples: (trained.append(samples), update(samples))[1]  # type: ignore[method-assign]
    rows, plain_rates = [], []
    for i in range(args.iterations):
        rows.append(trainer.train_step(i))
        trainer.step += 1
        plain_rates.append(plain_train_tokens_per_s(trainer, plain, trained[-1]))
    paired = []  # trainer ÷ plain loop on the last iteration's samples again, alternating (before the engine closes)
    tokens = sum(len(s["ids"]) for s in trained[-1])
    for _ in range(args.rounds):
        start = time.perf_counter()
        update(copy.deepcopy(trained[-1]))
        paired.append(tokens / (time.perf_counter() - start) / plain_train_tokens_per_s(trainer, plain, trained[-1]))
    trainer.rollout.close()

    params = sum(p.numel() for p in trainer.engine.module.parameters())
    steady = rows[1:] or rows
    mean = {k: sum(r[k] for r in steady) / len(steady) for k in steady[0]}
    train_flops = 6 * params * mean["train_tokens_per_s"]
    plain_rate = statistics.mean(plain_rates[1:] or plain_rates)  # the first iteration warms up, as for ``steady``
    result = {
        "vllm_tokens_per_s": max(rates["vllm"]),
        "hf_generate_tokens_per_s": max(rates["hf"]),
        "rollout_speedup": max(rates["vllm"]) / max(rates["hf"]),
        "train_tokens_per_s": mean["train_tokens_per_s"],
        "train_flops": train_flops,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "precision": describe(precision),
        "matmul_peak_flops": peak,
        "train_flops_over_peak": train_flops / peak,
        "layer_matmul_shape": "x".join(map(str, layer_shape)),
        "layer_matmul_flops": layer_peak,
        "layer_matmul_over_peak": layer_peak / peak,
        "train_flops_over_layer_matmul": train_flops / layer_peak,
        "plain_pytorch_train_tokens_per_s": plain_rate,
        "train_over_plain_pytorch": statistics.median(paired),
        "train_over_plain_pytorch_rounds": paired,
        "train_over_plain_pytorch_in_iterations": mean["train_tokens_per_s"] / plain_rate,
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
