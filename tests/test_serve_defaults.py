"""Which checkpoints ``k15 serve`` picks without --long/--short (no engine started here)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from k15.serve.config import ServeConfig
from k15.serve.stack import choose_checkpoints
from tests.conftest import make_checkpoint


def test_newest_trained_checkpoints_are_served(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K15_RUNS", str(tmp_path))
    old_long = make_checkpoint(tiny_model, tmp_path / "a" / "long", "long-cot")
    time.sleep(1.1)  # k15.json timestamps have one-second resolution
    new_long = make_checkpoint(tiny_model, tmp_path / "b" / "long", "long-cot")
    short = make_checkpoint(tiny_model, tmp_path / "b" / "short", "long2short")
    warnings: list[str] = []
    assert choose_checkpoints(ServeConfig(), warn=warnings.append) == (new_long, short)
    assert not warnings and old_long.exists()


def test_missing_kinds_fall_back_to_the_default_with_a_warning(
    tiny_model: Path, default_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K15_RUNS", str(tmp_path))
    long = make_checkpoint(tiny_model, tmp_path / "run" / "long", "long-cot")
    warnings: list[str] = []
    assert choose_checkpoints(ServeConfig(), warn=warnings.append) == (long, default_model)
    assert "no long2short checkpoint" in warnings[0]
    explicit = choose_checkpoints(ServeConfig(long=str(long), short=str(long)), warn=warnings.append)
    assert explicit == (long, long) and "are the same model" in warnings[-1]


def test_checkpoint_metadata_is_what_kind_reads(tiny_model: Path, tmp_path: Path) -> None:
    ckpt = make_checkpoint(tiny_model, tmp_path / "c", "long2short")
    info = json.loads((ckpt / "k15.json").read_text())
    assert info["kind"] == "long2short" and os.path.isfile(ckpt / "tokenizer_config.json")
