"""long2short (§2.4): methods that turn a long-CoT model into a short-CoT one, registered by name — model
merging, shortest rejection sampling, DPO, and long2short RL (the RL trainer with checkpoint kind long2short)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from k15.config import Config

# name → (module, its config class); each module has ``run(config) -> final checkpoint``.
METHODS: dict[str, tuple[str, str]] = {
    "merge": ("k15.train.long2short.merge", "MergeConfig"),
    "shortest": ("k15.train.long2short.shortest", "ShortestConfig"),
    "dpo": ("k15.train.long2short.dpo", "Long2ShortDPOConfig"),
    "rl": ("k15.train.long2short.rl", "Long2ShortRLConfig"),
}


def _module(method: str) -> Any:
    if method not in METHODS:
        raise ValueError(f"unknown long2short method {method!r}; expected one of {', '.join(METHODS)}")
    return importlib.import_module(METHODS[method][0])


def config_class(method: str) -> type[Config]:
    return getattr(_module(method), METHODS[method][1])


def run(method: str, config: Config) -> Path:
    """Train ``method`` from its config; returns the final checkpoint."""
    return _module(method).run(config)
