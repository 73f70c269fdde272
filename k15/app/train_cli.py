"""``k15 train sft|rl|long-cot|long2short``. Multi-rank runs use the DeepSpeed launcher on the module entry point:
``deepspeed [--hostfile H] [--num_gpus N] --module k15 train rl --config FILE`` (see ``train/__main__.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from k15.train.long2short import METHODS as LONG2SHORT_METHODS


def add_train_parser(sub: argparse._SubParsersAction, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    train = sub.add_parser("train", help="long-CoT warm-up SFT and Kimi k1.5 RL on DeepSpeed")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    for name, text in (("sft", "long-CoT warm-up SFT on prompt/response JSONL"),
                       ("rl", "online-mirror-descent RL with vLLM rollouts")):  # fmt: skip
        command = train_sub.add_parser(name, help=text)
        config_args(command)
    config_args(train_sub.add_parser("long-cot", help="demo data → warm-up SFT → RL → held-out comparison"))
    long2short = train_sub.add_parser("long2short", help="a short-CoT model from a long-CoT one (§2.4): merge, "
                                      "shortest rejection sampling, DPO or RL with the length penalty")  # fmt: skip
    long2short.add_argument("--method", required=True, choices=list(LONG2SHORT_METHODS))
    config_args(long2short)


def cmd_train_sft(args: argparse.Namespace) -> int:
    from k15.config import load_config
    from k15.train.sft import SFTConfig, SFTTrainer

    final = SFTTrainer(load_config(SFTConfig, args.config, args.overrides)).train()
    print(f"k15 train sft: checkpoint {final}")
    return 0


def cmd_train_rl(args: argparse.Namespace) -> int:
    from k15.config import load_config
    from k15.train.rl.trainer import RLConfig, RLTrainer

    final = RLTrainer(load_config(RLConfig, args.config, args.overrides)).train()
    print(f"k15 train rl: checkpoint {final}")
    return 0


def cmd_train_long_cot(args: argparse.Namespace) -> int:
    from k15.app.pipeline import LongCoTPipelineConfig, run
    from k15.config import load_config

    run(load_config(LongCoTPipelineConfig, args.config, args.overrides))
    return 0


def run_long2short(method: str, config: str | None, overrides: Sequence[str]) -> Path:
    """Run one long2short method from its config; returns the checkpoint."""
    from k15.config import load_config
    from k15.train import long2short

    return long2short.run(method, load_config(long2short.config_class(method), config, overrides))


def cmd_train_long2short(args: argparse.Namespace) -> int:
    final = run_long2short(args.method, args.config, args.overrides)
    print(f"k15 train long2short: {args.method} checkpoint {final}")
    return 0


TRAIN_COMMANDS: dict[tuple[str, ...], Callable[[argparse.Namespace], int]] = {
    ("train", "sft"): cmd_train_sft,
    ("train", "rl"): cmd_train_rl,
    ("train", "long-cot"): cmd_train_long_cot,
    ("train", "long2short"): cmd_train_long2short,
}
