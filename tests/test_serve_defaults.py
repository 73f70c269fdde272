"""Which checkpoints ``k15 serve`` picks without --long/--short, and how it holds its ports (no engine started here)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from k15.net import free_port
from k15.serve.config import ServeConfig
from k15.serve.stack import ServingStack, choose_checkpoints
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


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    """The OS offers a released port again (≈ 6% repeats in 2000 binds here): two servers told their ports before
    they bind would collide."""
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_the_router_holds_its_port_before_any_backend_is_chosen(tiny_model: Path) -> None:
    """``k15 serve`` binds its router address first, so no backend port can be the router's, and a port in use is a
    one-line error naming it (no engine is started here)."""
    long = make_checkpoint(tiny_model, tiny_model.parent / "port-long", "long-cot")
    stack = ServingStack(ServeConfig(long=str(long), short=str(tiny_model)), log=lambda _line: None)
    try:
        assert stack.port not in {b.server.port for b in stack.unique_backends}
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{stack.port}"):
            ServingStack(ServeConfig(long=str(long), short=str(tiny_model), port=stack.port), log=lambda _l: None)
    finally:
        stack.stop()
