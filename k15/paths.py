"""Where k15 keeps prepared models, run outputs and logs (``K15_HOME``, default ``~/.cache/k15``)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The k15 cache root; ``K15_HOME`` overrides it."""
    return Path(os.environ.get("K15_HOME") or Path.home() / ".cache" / "k15").expanduser()


def models_dir() -> Path:
    return home() / "models"


def runs_dir() -> Path:
    """Default parent of training runs; ``K15_RUNS`` overrides it."""
    return Path(os.environ.get("K15_RUNS") or home() / "runs").expanduser()


def logs_dir() -> Path:
    path = home() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(output_dir: str | None, name: str) -> Path:
    """A run's directory: ``output_dir`` when given, else ``runs_dir()/name``."""
    return Path(output_dir).expanduser() if output_dir else runs_dir() / name
