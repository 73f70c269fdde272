"""``evalsuite``: grade model responses on the k15 benchmarks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from k15.allocator import preload_tcmalloc
from k15.command import run_handled


def cmd_score(args: argparse.Namespace) -> int:
    from k15.evalsuite.score import score_file

    summary = score_file(
        Path(args.file),
        args.task,
        out=Path(args.out) if args.out else None,
        think_opened_by_prompt=args.think_opened_by_prompt,
    )
    print(f"evalsuite: {args.task}: {summary}", file=sys.stderr)
    return 0


# `evalsuite run` flags that map one-to-one onto EvalConfig keys.
RUN_FLAGS = (
    "endpoint", "api_key", "backend", "samples", "limit", "out", "data_dir", "concurrency",
    "temperature", "max_tokens_long", "max_tokens_short", "seed", "judge_endpoint", "judge_model", "math_verifier",
)  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    from k15.config import load_config
    from k15.evalsuite.runner import EvalConfig, run

    overrides = [f"tasks={json.dumps(args.tasks)}", *args.overrides]
    for key in RUN_FLAGS:
        if getattr(args, key) is not None:
            overrides.append(f"{key}={json.dumps(getattr(args, key))}")
    if args.thinking_budgets is not None:
        overrides.append(f"thinking_budgets={json.dumps(args.thinking_budgets)}")
    if args.model:
        overrides.append(f"models={json.dumps(args.model)}")
    if args.model_path:
        overrides.append(f"model_paths={json.dumps(args.model_path)}")
    for flag, key in (("long", "serve.long"), ("short", "serve.short")):
        if getattr(args, flag):
            overrides.append(f"{key}={json.dumps(getattr(args, flag))}")
    out = run(load_config(EvalConfig, args.config, overrides))
    print(f"evalsuite: results in {out}/ (summary.json, results.md, accuracy_vs_tokens.png, samples/)", file=sys.stderr)
    return 0


def budget_list(text: str) -> list[int]:
    """``32,64,128`` → [32, 64, 128]; argparse turns the ValueError into a usage error."""
    try:
        budgets = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of token counts: {text!r}") from None
    if not budgets or any(b < 0 for b in budgets):
        raise argparse.ArgumentTypeError(f"thinking budgets must be token counts ≥ 0, got {text!r}")
    return sorted(set(budgets))


def cmd_report(args: argparse.Namespace) -> int:
    from k15.evalsuite.report import compare, render

    dirs = [Path(d) for d in args.dirs]
    single = len(dirs) == 1 and not args.out
    paths = render(dirs[0]) if single else compare(dirs, Path(args.out or dirs[0]))
    print("\n".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalsuite", description="Evaluate k15 models on math benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="grade a JSONL file of responses (fields: response, answer, ...)")
    score.add_argument("file", metavar="FILE", help="JSONL input, one object per line")
    score.add_argument("--task", required=True,
                       help="benchmark whose grader to use, e.g. math500, aime24, mathvista, humaneval (code rows: "
                            "id, or their own test)")  # fmt: skip
    score.add_argument("--out", metavar="FILE", help="write graded lines here (default: stdout)")
    score.add_argument(
        "--think-opened-by-prompt", action="store_true",
        help="the prompt opened the think block: text before </think> is reasoning even without <think>",
    )  # fmt: skip

    run = sub.add_parser(
        "run", help="evaluate served models (or a checkpoint) on tasks: aime24 aime25 aime math500 mathvista"
    )
    run.add_argument("tasks", nargs="+", metavar="TASK")
    run.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible base URL (default: start k15 serve)")
    run.add_argument("--model", action="append", metavar="NAME",
                     help="model at the endpoint, or the name of each --model-path (repeatable; default: all "
                          "modes, or the checkpoints' folder names)")  # fmt: skip
    run.add_argument("--long", metavar="PATH", help="without --endpoint: long-CoT checkpoint to serve")
    run.add_argument("--short", metavar="PATH", help="without --endpoint: long2short checkpoint to serve")
    run.add_argument("--api-key")
    run.add_argument("--backend", choices=["endpoint", "vllm"], help="vllm: evaluate --model-path in-process")
    run.add_argument("--model-path", action="append", metavar="PATH",
                     help="--backend vllm: a checkpoint (repeatable: one engine, weights swapped)")  # fmt: skip
    run.add_argument("--samples", type=int, help="samples per problem (pass@1 is their mean; also maj@n, pass@k)")
    run.add_argument("--limit", type=int, help="first N problems of each task")
    run.add_argument("--out", metavar="DIR", help="results directory; re-run with the same DIR to resume")
    run.add_argument("--data-dir", metavar="DIR", help="local JSONL copies instead of the hub (or K15_DATA_DIR)")
    run.add_argument("--concurrency", type=int)
    run.add_argument("--temperature", type=float)
    run.add_argument("--max-tokens-long", type=int)
    run.add_argument("--max-tokens-short", type=int)
    run.add_argument("--seed", type=int)
    run.add_argument(
        "--thinking-budgets", type=budget_list, metavar="N,N,...",
        help="sweep: each thinking model once per budget of thinking tokens (the answer forced after the cut)",
    )  # fmt: skip
    run.add_argument(
        "--judge-endpoint",
        metavar="URL",
        help="a judge LLM at this URL: MathVista's answer extractor, the --math-verifier judge",
    )
    run.add_argument("--judge-model", metavar="NAME", help="the judge's model name")
    run.add_argument("--math-verifier", choices=["rules", "judge", "rules_then_judge"],
                     help="math answers: the rules (default), the chain-of-thought judge, or the judge where the "
                          "rules found no answer or called it wrong")  # fmt: skip
    run.add_argument("--config", "-c", metavar="FILE", help="YAML config (keys of EvalConfig)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    report = sub.add_parser("report", help="re-render a run's report, or compare several runs")
    report.add_argument("dirs", nargs="+", metavar="DIR")
    report.add_argument("--out", metavar="DIR", help="where to write comparison.md/.png (default: the first DIR)")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"score": cmd_score, "run": cmd_run, "report": cmd_report}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``evalsuite`` command; ``argv`` None: the process's own arguments (then under tcmalloc, k15.allocator)."""
    if argv is None:
        preload_tcmalloc()
    args = build_parser().parse_args(argv)
    return run_handled("evalsuite", lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
