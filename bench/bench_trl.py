"""k15 RL against TRL's ``GRPOTrainer`` (issue: fast on every CPU): samples per second of whole RL iterations
(rollout + reward + update) on one configuration, both in this process, TRL first.

Same model (saved once with the k15 chat template and think tokens, so both sample from the same prompt tokens),
prompt set (a generated demo task), prompts per iteration, k samples per prompt, token budget, temperature,
micro-batch, learning rate and precision (``dtype: auto``), and the same reward (k15's verifier). Samples per
second depend on how long the samples are: the report gives each side's mean completion length. A model that
thinks (a warm-up checkpoint: ``--model RUN/sft/final --task countdown``) makes both write long responses; the
untrained default mostly stops early.
TRL runs in its Hugging Face ``generate`` mode (its vLLM modes need CUDA), at its best for this machine:
gradient checkpointing off (TRL's default is on), the model loaded in the training precision, no reference model
(``beta: 0``, TRL's default); one optimizer step per generation of ``prompts × k`` completions, as k15's iteration.
k15 runs its default CPU set-up: the vLLM engine in process, DeepSpeed ZeRO-0 (one rank), log π_θi from the
training forward (no separate pass with one mini-batch), weight sync. The first iteration of each warms up and
is not counted. Needs the ``bench`` extra (``pip install -e ".[bench]"``).

    python bench/bench_trl.py [--model PATH] [--task arith|countdown] [--levels 1,2] [--iterations 4] [--prompts 8]
                              [--k 4] [--max-tokens 128]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import torch
import yaml

from k15.config import load_config
from k15.models import resolve_model
from k15.precision import describe, resolve, torch_dtype
from k15.train.data.formats import load_problems
from k15.train.rl.rewards import RewardConfig, Verifier
from k15.train.rl.rollout import prompt_ids
from k15.train.rl.trainer import RLConfig, RLTrainer
from k15.train.runtime.deepspeed_setup import load_policy


def shared_policy(model: str | Path, out: Path) -> Path:
    """``model`` with the k15 chat template and think tokens, saved once: the checkpoint both trainers load."""
    policy, tokenizer, _ = load_policy(model, "float32")
    policy.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def trl_steps(model: Path, data: Path, args: Any, work: Path) -> tuple[list[float], list[dict[str, float]]]:
    """Wall seconds of each TRL optimizer step (one generation of ``prompts × k`` completions and its update), and
    each step's logged metrics (reward, completion lengths)."""
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model)
    problems = load_problems(data, "math", None, "problem", "answer")  # rows name their own grader
    verifier = Verifier(RewardConfig())
    # The exact prompt k15 rolls out from (its chat template opens the thinking), as text TRL tokenizes again.
    texts = [tokenizer.decode(prompt_ids(tokenizer, p.text)) for p in problems]
    dataset = Dataset.from_dict({"prompt": texts, "index": list(range(len(problems)))})

    def reward(completions: list[str], index: list[int], **_: Any) -> list[float]:
        return [float(verifier(problems[i], text).correct) for text, i in zip(completions, index, strict=True)]

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = [time.perf_counter()]

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.ends.append(time.perf_counter())

    precision = resolve("auto")
    completions = args.prompts * args.k
    config = GRPOConfig(
        output_dir=str(work / "trl"), max_steps=args.iterations, learning_rate=args.lr, num_generations=args.k,
        per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=completions // args.micro_batch,
        max_completion_length=args.max_tokens, temperature=1.0, top_p=1.0, beta=0.0, gradient_checkpointing=False,
        use_cpu=True, bf16=precision == "bfloat16", report_to="none", logging_steps=1, save_strategy="no",
        seed=0, model_init_kwargs={"dtype": torch_dtype(precision)}, dataloader_num_workers=0,
    )  # fmt: skip
    clock = Clock()
    trainer = GRPOTrainer(model=str(model), reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[clock])  # fmt: skip
    clock.ends = [time.perf_counter()]
    trainer.train()
    logged = [row for row in trainer.state.log_history if "reward" in row]
    return [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)], logged


def k15_iterations(model: Path, data: Path, args: Any, work: Path) -> list[dict[str, float]]:
    """The metrics of each k15 RL iteration on the same set-up."""
    config = {
        "model": str(model), "data": {"path": str(data)}, "output_dir": str(work / "k15"),
        "iterations": args.iterations, "prompts_per_iteration": args.prompts, "tensorboard": False,
        "save_every": 1000, "state_every": 1000, "mini_batches": 1, "reset_optimizer": False,
        "prompt_sampling": {"curriculum": False, "prioritized": False},
        "rollout": {"k": args.k, "max_tokens": args.max_tokens, "temperature": 1.0,
                    "engine": {"enforce_eager": True, "max_model_len": 1024}},
        "deepspeed": {"lr": args.lr, "micro_batch_size": args.micro_batch},
    }  # fmt: skip
    (work / "rl.yaml").write_text(yaml.safe_dump(config))
    trainer = RLTrainer(load_config(RLConfig, work / "rl.yaml", []))
    rows = []
    for i in range(args.iterations):
        rows.append(trainer.train_step(i))
        trainer.step += 1
    trainer.close()
    return rows


def main() -> None:
    parser = common.parser(__doc__, "docs/bench-trl.json")
    common.add_prompt_flags(parser)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-5)
    args = parser.parse_args()
    if (args.prompts * args.k) % args.micro_batch:
        parser.error("--prompts × --k must be a multiple of --micro-batch")
    try:
        import trl
    except ImportError:
        parser.error("TRL is not installed: pip install -e '.[bench]'")

    work = Path(tempfile.mkdtemp(prefix="k15-bench-trl-"))
    data = common.demo_prompts(args, work)
    model = shared_policy(resolve_model(args.model), work / "policy")
    precision = describe("auto")
    print(f"bench-trl: precision {precision}; TRL {trl.__version__}", flush=True)

    trl_seconds, trl_logged = trl_steps(model, data, args, work)
    rows = k15_iterations(model, data, args, work)
    samples = args.prompts * args.k
    trl_s = statistics.mean(trl_seconds[1:] or trl_seconds)
    k15_s = statistics.mean([r["iteration_s"] for r in rows[1:] or rows])
    result = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "precision": precision,
        "trl_version": trl.__version__,
        "trl_mode": "HF generate (use_vllm=False), gradient checkpointing off, beta 0",
        "model": str(args.model or "the embedded default"),
        "task": args.task,
        "samples_per_iteration": samples,
        "max_tokens": args.max_tokens,
        "iterations_timed": args.iterations - 1,
        "trl_iteration_s": trl_s,
        "k15_iteration_s": k15_s,
        "trl_samples_per_s": samples / trl_s,
        "k15_samples_per_s": samples / k15_s,
        "k15_over_trl": trl_s / k15_s,
        "trl_completion_len": statistics.mean(r["completions/mean_length"] for r in trl_logged[1:] or trl_logged),
        "k15_response_len": statistics.mean(r["response_len_mean"] for r in rows[1:] or rows),
        "trl_step_s": trl_seconds,
        "k15_iteration_s_each": [r["iteration_s"] for r in rows],
        "trl_reward_each": [r["reward"] for r in trl_logged],
        "k15_accuracy_each": [r["accuracy"] for r in rows],
        "trl_completion_len_each": [r["completions/mean_length"] for r in trl_logged],
        "k15_response_len_each": [r["response_len_mean"] for r in rows],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:24s} {value:.4g}" if isinstance(value, float) else f"{key:24s} {value}")


if __name__ == "__main__":
    main()
