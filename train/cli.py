"""``k15 train sft|rl``. Multi-rank runs use the DeepSpeed launcher on the module entry point:
``deepspeed [--hostfile H] [--num_gpus N] --module train rl --config FILE`` (see ``train/__main__.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_train_parser(sub: argparse._SubParsersAction, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    train = sub.add_parser("train", help="long-CoT warm-up SFT and Kimi k1.5 RL on DeepSpeed")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    for name, text in (("sft", "long-CoT warm-up SFT on prompt/response JSONL"),
                       ("rl", "online-mirror-descent RL with vLLM rollouts")):  # fmt: skip
        command = train_sub.add_parser(name, help=text)
        config_args(command)
        command.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # the launcher's
    config_args(train_sub.add_parser("long-cot", help="demo data → warm-up SFT → RL → held-out comparison"))


def cmd_train_sft(args: argparse.Namespace) -> int:
    from k15.config import load_config
    from train.sft import SFTConfig, SFTTrainer

    final = SFTTrainer(load_config(SFTConfig, args.config, args.overrides)).train()
    print(f"k15 train sft: checkpoint {final}")
    return 0


def cmd_train_rl(args: argparse.Namespace) -> int:
    from k15.config import load_config
    from train.rl import RLConfig, RLTrainer

    final = RLTrainer(load_config(RLConfig, args.config, args.overrides)).train()
    print(f"k15 train rl: checkpoint {final}")
    return 0


def cmd_train_long_cot(args: argparse.Namespace) -> int:
    from k15.config import load_config
    from train.pipeline import LongCoTPipelineConfig, run

    run(load_config(LongCoTPipelineConfig, args.config, args.overrides))
    return 0


TRAIN_COMMANDS: dict[tuple[str, ...], Callable[[argparse.Namespace], int]] = {
    ("train", "sft"): cmd_train_sft,
    ("train", "rl"): cmd_train_rl,
    ("train", "long-cot"): cmd_train_long_cot,
}
