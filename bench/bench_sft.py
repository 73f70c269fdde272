"""SFT trainer speed on a CUDA GPU or the CPU (issue: fast everywhere): k15's SFT trainer (DeepSpeed,
``dtype: auto``) on Countdown warm-up traces, its FLOP/s (6·N per token) against the matmul peak of its precision
measured in the same process, its tokens/s against a plain PyTorch AdamW loop on the same model, sequences and
micro-batches, and whether the loss falls.

    python bench/bench_sft.py --model DIR [--random-init] [--shape qwen2.5-1.5b] [--examples 512]

``--random-init`` trains the architecture of ``--model`` from random weights (same speed as the real ones; for a
machine the checkpoint cannot travel to); ``--shape`` swaps in the layer sizes of a larger model, on the same
tokenizer. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from bench_precision import matmul_flops, synchronize

from k15.config import load_config
from k15.precision import describe, torch_dtype
from k15.train.data import demo_splits
from k15.train.runtime.logprobs import sequence_logprobs
from k15.train.sft import SFTConfig, SFTTrainer

SHAPES = {  # layer sizes of public models (their config.json), trained here on the --model's tokenizer
    "qwen2.5-1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "qwen2.5-7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
    "two-layers": {"num_hidden_layers": 2},  # the default's widths, 2 layers: per-step overheads show
}  # fmt: skip
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def random_checkpoint(source: Path, shape: str | None, out: Path) -> Path:
    """``source``'s architecture (or ``shape``'s sizes) with random weights, beside ``source``'s tokenizer files."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    for key, value in SHAPES.get(shape or "", {}).items():
        setattr(config, key, value)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(out)
    for item in source.iterdir():
        if item.is_file() and not item.name.endswith(".safetensors") and item.name != "config.json":
            shutil.copy(item, out / item.name)
    return out


def plain_tokens_per_s(model: Any, trainer: SFTTrainer, steps: int) -> float:
    """Training tokens/s of a plain PyTorch loop (fused AdamW, no DeepSpeed) over the trainer's first ``steps``
    steps: the same sequences, grouped into the same micro-batches, token-mean NLL on the response tokens."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=DEVICE == "cuda")
    encoded = trainer.encoded
    rates = []
    for step in range(steps):
        indices = trainer.batch_indices(step)
        rows = [encoded[i] for i in indices]
        tokens = sum(sum(mask[1:]) for _, mask in rows)
        synchronize(DEVICE)
        start = time.perf_counter()
        for batch in trainer.micro_batches(indices, lambda i: len(encoded[i][0])):
            chunk = [encoded[i] for i in batch]
            logp, _, _ = sequence_logprobs(model, [ids for ids, _ in chunk], [mask for _, mask in chunk],
                                           trainer.pad_id)  # fmt: skip
            (-logp.sum() / tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        synchronize(DEVICE)
        rates.append(sum(len(ids) for ids, _ in rows) / (time.perf_counter() - start))
    return statistics.mean(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="k15-bench-sft-"))
    model = random_checkpoint(args.model, args.shape, work / "model") if args.random_init else args.model
    data = demo_splits("countdown")(work / "data", train=0, heldout=0, sft=args.examples)["sft"]
    config = {
        "model": str(model), "data": str(data), "output_dir": str(work / "run"), "epochs": 1,
        "batch_size": args.batch_size, "max_length": args.max_length, "tensorboard": False, "state_every": 10_000,
        "deepspeed": {"lr": 1e-4, "micro_batch_size": args.micro_batch_size},
    }  # fmt: skip
    (work / "sft.yaml").write_text(yaml.safe_dump(config))
    trainer = SFTTrainer(load_config(SFTConfig, work / "sft.yaml", []))
    precision = trainer.cfg.deepspeed.dtype
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    steady = rows[1:] or rows
    params = sum(p.numel() for p in trainer.engine.module.parameters())
    train_rate = statistics.mean(r["train_tokens_per_s"] for r in steady)

    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype(precision)).to(DEVICE)
    plain_rate = plain_tokens_per_s(plain, trainer, steps=min(4, len(rows)))
    del plain
    peak = matmul_flops(torch_dtype(precision), size=8192 if DEVICE == "cuda" else 2048, device=DEVICE)
    result = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "precision": describe(precision), "params": params,
        "shape": args.shape or "as --model", "random_init": args.random_init, "steps": len(rows),
        "sequences": len(trainer.encoded),
        "mean_tokens_per_sequence": statistics.mean(len(ids) for ids, _ in trainer.encoded),
        "loss_first": rows[0]["loss"], "loss_last": rows[-1]["loss"],
        "train_tokens_per_s": train_rate, "train_flops": 6 * params * train_rate, "matmul_peak_flops": peak,
        "train_flops_over_peak": 6 * params * train_rate / peak,
        "plain_pytorch_train_tokens_per_s": plain_rate, "train_over_plain_pytorch": train_rate / plain_rate,
        "wall_s": wall,
    }  # fmt: skip
    print(json.dumps(result, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
