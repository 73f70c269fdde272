"""``evalsuite``: grade model responses on the k15 benchmarks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def cmd_score(args: argparse.Namespace) -> int:
    from evalsuite.score import score_file

    summary = score_file(
        Path(args.file),
        args.task,
        out=Path(args.out) if args.out else None,
        think_opened_by_prompt=args.think_opened_by_prompt,
    )
    print(f"evalsuite: {args.task}: {summary}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalsuite", description="Evaluate k15 models on math benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="grade a JSONL file of responses (fields: response, answer, ...)")
    score.add_argument("file", metavar="FILE", help="JSONL input, one object per line")
    score.add_argument("--task", required=True, help="benchmark whose grader to use, e.g. math500, aime24, mathvista")
    score.add_argument("--out", metavar="FILE", help="write graded lines here (default: stdout)")
    score.add_argument(
        "--think-opened-by-prompt", action="store_true",
        help="the prompt opened the think block: text before </think> is reasoning even without <think>",
    )  # fmt: skip
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"score": cmd_score}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (OSError, ValueError) as exc:
        print(f"evalsuite: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalsuite: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
