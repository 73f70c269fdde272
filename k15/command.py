"""What every command line shares: the ``--config`` / ``--set`` arguments and one-line error handling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from k15.config import ConfigError


def config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML config file")
    parser.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
        help="override one config key, e.g. --set engine.max_model_len=2048 (repeatable)",
    )  # fmt: skip


def run_handled(prog: str, command: Callable[[], int]) -> int:
    """Run a CLI command: expected failures (bad config or input, a server that would not start) become one
    ``prog: error: …`` line and exit code 2, never a traceback; Ctrl-C exits 130."""
    try:
        return command()
    except (ConfigError, OSError, RuntimeError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
