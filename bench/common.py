"""What the benchmarks share: the command line every one of them starts from, the prompts of the RL benchmarks,
and printing a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from k15.app.data_cli import level_list


def parser(doc: str, out: str | None, model_default: str | None = None) -> argparse.ArgumentParser:
    """``--model`` and ``--out`` (``out``: the default file; None: print only unless given)."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0])
    made.add_argument("--model", default=model_default, help="checkpoint (default: the embedded default)")
    made.add_argument("--out", type=Path, default=Path(out) if out else None, help="also write the report here")
    return made


def add_prompt_flags(made: argparse.ArgumentParser) -> None:
    """``--task`` / ``--levels``: the generated demo task whose training prompts an RL benchmark rolls out."""
    made.add_argument("--task", default="arith", help="the generated demo task of the prompts (arith, countdown)")
    made.add_argument("--levels", type=level_list, default=None, help="its difficulty levels, e.g. 1,2 (default: all)")


def demo_prompts(args: argparse.Namespace, work: Path, count: int = 200) -> Path:
    """``count`` training prompts of ``--task`` / ``--levels``, written under ``work``."""
    from k15.train.data import demo_splits

    return demo_splits(args.task)(work / args.task, train=count, heldout=10, sft=10, levels=args.levels)["train"]


def emit(report: str, out: Path | None) -> None:
    print(report)
    if out:
        out.write_text(report + "\n")
