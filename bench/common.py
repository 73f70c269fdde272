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


def add_eval_flags(made: argparse.ArgumentParser) -> None:
    """The in-process evaluation benchmarks' prompts: ``--prompts`` of the demo task (Countdown, levels 1–2 by
    default) with ``--max-tokens`` each."""
    add_prompt_flags(made)
    made.set_defaults(task="countdown", levels=[1, 2])
    made.add_argument("--prompts", type=int, default=200)
    made.add_argument("--max-tokens", type=int, default=512)


def eval_requests(args: argparse.Namespace) -> list[tuple[list[dict], dict]]:
    """``args.prompts`` requests as the task's evalsuite task writes them, at the evaluation's sampling
    (temperature 0.6, top_p 0.95) with one seed per prompt, so that two runs do nearly the same work."""
    import tempfile

    from k15.evalsuite.tasks import get_task
    from k15.jsonl import read_rows

    with tempfile.TemporaryDirectory(prefix="k15-bench-eval-") as work:
        rows = read_rows(demo_prompts(args, Path(work), args.prompts))[0][: args.prompts]
    return [
        (get_task(args.task).to_item(row, None).messages(False),
         {"temperature": 0.6, "top_p": 0.95, "max_tokens": args.max_tokens, "seed": i})
        for i, row in enumerate(rows)
    ]  # fmt: skip
