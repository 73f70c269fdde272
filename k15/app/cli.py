"""``k15``: the umbrella command (models, train, data, serve, ui, report, demo)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from k15.allocator import preload_tcmalloc
from k15.command import config_args, run_handled


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def cmd_models_prepare_default(args: argparse.Namespace) -> int:
    from k15.models import prepare_default

    print(prepare_default())
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from k15.models import list_checkpoints
    from k15.precision import describe

    rows = list_checkpoints()
    if not rows:
        print("no local checkpoints yet; run: k15 models prepare-default")
        return 0
    print(f"{'KIND':<11} {'SIZE':>8}  {'NAME':<28} PATH")
    for row in rows:
        print(f"{row.kind:<11} {_human_size(row.size):>8}  {row.name:<28} {row.path}")
    print(f"precision on this machine (dtype auto): {describe('auto')}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from k15.config import load_config
    from k15.serve import stack
    from k15.serve.config import ServeConfig

    overrides = list(args.overrides)
    for key in ("long", "short", "port", "host", "api_key"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    return stack.run(load_config(ServeConfig, args.config, overrides))


def cmd_ui(args: argparse.Namespace) -> int:
    from k15.config import load_config
    from k15.ui.launch import UIConfig, run

    overrides = list(args.overrides)
    for key in ("endpoint", "api_key", "host", "port", "data_dir", "auth"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    if args.results:
        overrides.append("results=[" + ",".join(f'"{r}"' for r in args.results) + "]")
    return run(load_config(UIConfig, args.config, overrides))


def cmd_report_long2short(args: argparse.Namespace) -> int:
    import json

    from k15.config import load_config
    from k15.evalsuite import efficiency

    overrides = [f"run_dir={json.dumps(args.run_dir)}", *args.overrides]
    for key in ("long", "data_dir"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={json.dumps(getattr(args, key))}")
    cfg = load_config(efficiency.EfficiencyConfig, args.config, overrides)
    report = efficiency.run(cfg)
    print(efficiency.table(report))
    print(
        f"best long2short method: {report['best']} "
        f"({'meets' if report['best'] in report['met_by'] else 'misses'} the target); report in {cfg.out_dir()}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from k15.app import demo
    from k15.config import load_config

    return demo.run(load_config(demo.DemoConfig, args.config, args.overrides))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="k15", description="Kimi k1.5 reasoning models: train, serve, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="prepare and list local checkpoints")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("prepare-default", help="convert the embedded SmolLM2-135M-Instruct once; print its path")
    models_sub.add_parser("list", help="list local checkpoints with kind and size")

    serve = sub.add_parser("serve", help="serve the long-CoT and long2short checkpoints behind one OpenAI endpoint")
    config_args(serve)
    serve.add_argument("--long", metavar="PATH", help="long-CoT checkpoint (default: newest trained, else embedded)")
    serve.add_argument("--short", metavar="PATH", help="long2short checkpoint (default: newest trained, else embedded)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--api-key", help="require this key as 'Authorization: Bearer KEY' (or set K15_API_KEY)")

    ui = sub.add_parser("ui", help="the Gradio app: compare the reasoning modes, chat, browse eval results")
    config_args(ui)
    ui.add_argument("--endpoint", metavar="URL", help="k15 serve base URL (default: start k15 serve)")
    ui.add_argument("--api-key")
    ui.add_argument("--host", help="bind address (default 127.0.0.1)")
    ui.add_argument("--port", type=int, help="port (default 7860)")
    ui.add_argument("--results", nargs="*", metavar="DIR", help="evalsuite result directories to show")
    ui.add_argument("--data-dir", metavar="DIR", help="local task data for example prompts")
    ui.add_argument("--auth", metavar="USER:PASSWORD", help="require a login")

    from k15.app.data_cli import add_data_parser
    from k15.app.train_cli import add_train_parser

    add_train_parser(sub, config_args)
    add_data_parser(sub)

    report = sub.add_parser("report", help="reports over trained checkpoints")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    long2short = report_sub.add_parser("long2short", help="token efficiency (§2.4, Figure 7): the long-CoT model "
                                       "against every long2short checkpoint under RUN_DIR")  # fmt: skip
    long2short.add_argument("run_dir", metavar="RUN_DIR")
    long2short.add_argument("--long", metavar="PATH", help="the long-CoT model (default: the long2short ones' base)")
    long2short.add_argument("--data-dir", metavar="DIR", help="local copies of MATH-500 etc. (or K15_DATA_DIR)")
    config_args(long2short)

    demo = sub.add_parser(
        "demo",
        help="the main job: the whole recipe at demo scale (SFT → RL → long2short → "
        "report → serve → evalsuite → ui), resumable",
    )
    config_args(demo)
    return parser


COMMANDS: dict[tuple[str, ...], Callable[[argparse.Namespace], int]] = {
    ("models", "prepare-default"): cmd_models_prepare_default,
    ("models", "list"): cmd_models_list,
    ("serve",): cmd_serve,
    ("ui",): cmd_ui,
    ("report", "long2short"): cmd_report_long2short,
    ("demo",): cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``k15`` command; ``argv`` None: the process's own arguments (then under tcmalloc, k15.allocator)."""
    from k15.app.data_cli import DATA_COMMANDS
    from k15.app.train_cli import TRAIN_COMMANDS

    if argv is None:
        preload_tcmalloc()
    args = build_parser().parse_args(argv)
    second = {"models": "models_command", "train": "train_command", "data": "data_command",
              "report": "report_command"}.get(args.command)  # fmt: skip
    key = (args.command, getattr(args, second)) if second else (args.command,)
    return run_handled("k15", lambda: {**COMMANDS, **TRAIN_COMMANDS, **DATA_COMMANDS}[key](args))


if __name__ == "__main__":
    sys.exit(main())
