"""Shared fixtures: a test-local K15_HOME, the embedded default checkpoint and a tiny random model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Tests never touch the user's cache; the converted default model is reused across test runs.
os.environ.setdefault("K15_HOME", str(REPO / ".k15"))
SHARED_DATA = REPO.parent / "shared" / "data"


def run_k15(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``k15`` command (the real console script) and capture its output."""
    exe = Path(sys.executable).parent / "k15"
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="session")
def default_model() -> Path:
    from k15.models import prepare_default

    return prepare_default(progress=False)


def build_tiny_model(source: Path, out: Path, layers: int = 2, hidden: int = 128) -> Path:
    """A randomly initialised model with ``source``'s architecture and tokenizer, small enough for fast tests.

    Two heads of 64 dims: vLLM's CPU attention needs a supported head size.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    config.update(
        {"num_hidden_layers": layers, "hidden_size": hidden, "intermediate_size": 2 * hidden,
         "num_attention_heads": hidden // 64, "num_key_value_heads": 1, "head_dim": 64}
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(default_model, tmp_path_factory.mktemp("tiny-model"))
