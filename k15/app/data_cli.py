"""``k15 data``: training data — the CPU demo task's splits, long-CoT warmup SFT data and curated prompt sets.

Handlers raise ValueError / OSError / RuntimeError with a one-line message for bad input or an unreachable
endpoint; the ``k15`` CLI prints it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from k15.prompts import MATH_PROMPT

if TYPE_CHECKING:
    from k15.train.data.formats import Problem
    from k15.train.data.warmup import Endpoint


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _endpoint_args(parser: argparse.ArgumentParser, k: int, max_tokens: int) -> None:
    """The options warmup and curate share: where to sample, what to read and write, how to sample."""
    parser.add_argument("--endpoint", metavar="URL", required=True, help="OpenAI-compatible base URL (…/v1)")
    parser.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY)")
    parser.add_argument("--model", metavar="NAME", help="model name at the endpoint (default: the first served)")
    parser.add_argument("--input", metavar="FILE", required=True, help="problems JSONL (problem and answer fields)")
    parser.add_argument("--output", metavar="FILE", required=True, help="output JSONL; a rerun resumes it")
    parser.add_argument("-k", type=_count(1), default=k, help=f"samples per problem (default {k})")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--max-tokens", type=_count(1), default=max_tokens, help=f"per sample (default {max_tokens})")
    parser.add_argument("--concurrency", type=_count(1), default=8, help="requests in flight (default 8)")
    parser.add_argument("--problem-field", default="problem", help="field holding the problem (default problem)")
    parser.add_argument("--answer-field", default="answer", help="field holding the answer (default answer)")
    parser.add_argument("--grader", default="math", help="grader for rows that name none (default math)")
    parser.add_argument("--prompt-template", default=MATH_PROMPT, help="user prompt with {problem} (default: MATH)")
    parser.add_argument("--seed", type=int, default=0, help="sample i is requested with seed SEED+i (default 0)")
    parser.add_argument("--retries", type=_count(0), default=2, help="retries per request (default 2)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request (default 600)")


def add_data_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``data`` with its ``demo``, ``warmup`` and ``curate`` commands (dest ``data_command``) to ``sub``."""
    data = sub.add_parser("data", help="build training data: demo splits, long-CoT warmup SFT data, curated prompts")
    commands = data.add_subparsers(dest="data_command", required=True)

    demo = commands.add_parser("demo", help="write the CPU demo task: train, heldout and sft JSONL")
    demo.add_argument("out_dir", metavar="OUT_DIR", help="directory for train.jsonl, heldout.jsonl, sft.jsonl")
    demo.add_argument("--train", type=_count(0), default=2000, help="RL training problems (default 2000)")
    demo.add_argument("--heldout", type=_count(0), default=200, help="held-out problems (default 200)")
    demo.add_argument("--sft", type=_count(0), default=500, help="SFT traces (default 500)")
    demo.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")

    warmup = commands.add_parser("warmup", help="long-CoT SFT data by rejection sampling from a teacher endpoint")
    _endpoint_args(warmup, k=4, max_tokens=8192)
    warmup.add_argument("--keep-per-problem", type=_count(1), default=1, help="verified samples kept (default 1)")
    warmup.add_argument("--system-prompt", help="teacher system prompt (default: a long-CoT one; '' sends none)")

    curate = commands.add_parser("curate", help="difficulty by pass rate; drop hackable and unverifiable items")
    _endpoint_args(curate, k=8, max_tokens=4096)
    curate.add_argument("--hack-tries", type=_count(0), default=8, help="direct-answer tries (default 8; 0: skip)")
    curate.add_argument("--hack-max-tokens", type=_count(1), default=64, help="per direct answer (default 64)")


def _problems(args: argparse.Namespace) -> list[Problem]:
    from k15.grading import get_grader
    from k15.train.data.formats import load_problems

    get_grader(args.grader)
    try:
        args.prompt_template.format(problem="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"--prompt-template: bad field {exc} (only {{problem}}; {{{{}}}} for braces)") from None
    if "{problem}" not in args.prompt_template:
        raise ValueError("--prompt-template must contain {problem}")
    return load_problems(args.input, args.grader, args.prompt_template, args.problem_field, args.answer_field)


def _endpoint(args: argparse.Namespace) -> Endpoint:
    from k15.train.data.warmup import Endpoint

    return Endpoint(args.endpoint, args.api_key or os.environ.get("OPENAI_API_KEY"), args.model, args.concurrency,
                    args.timeout, args.retries, args.seed)  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> int:
    from k15.train.data.demo_task import make_splits

    for name, path in make_splits(args.out_dir, args.train, args.heldout, args.sft, args.seed).items():
        print(f"{name:<8} {getattr(args, name):>6} rows  {path}")
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    from k15.train.data.warmup import SYSTEM_PROMPT, warmup

    system_prompt = SYSTEM_PROMPT if args.system_prompt is None else args.system_prompt
    warmup(_problems(args), args.output, _endpoint(args), k=args.k, temperature=args.temperature,
           max_tokens=args.max_tokens, keep_per_problem=args.keep_per_problem, system_prompt=system_prompt)  # fmt: skip
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from k15.train.data.curate import curate

    curate(_problems(args), args.output, _endpoint(args), problem_field=args.problem_field, k=args.k,
           temperature=args.temperature, max_tokens=args.max_tokens, hack_tries=args.hack_tries,
           hack_max_tokens=args.hack_max_tokens)  # fmt: skip
    return 0


DATA_COMMANDS: dict[tuple[str, ...], Callable[[argparse.Namespace], int]] = {
    ("data", "demo"): cmd_demo,
    ("data", "warmup"): cmd_warmup,
    ("data", "curate"): cmd_curate,
}
