"""A backend killed under ``k15 serve``: requests fail fast with 503, then it is restarted.

It runs on its own stack: killing a backend is destructive, and the shared stack stays as the other tests expect.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.conftest import ServeProcess, engine_flags

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def stack(tiny_model: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(
        ["--long", str(tiny_model), "--short", str(tiny_model), *engine_flags(max_model_len=1024),
         "--set", "restart_backoff_s=0"]
    )  # fmt: skip
    yield server
    assert server.stop() == 0


@pytest.fixture()
def client(stack: ServeProcess) -> OpenAI:
    return OpenAI(base_url=stack.base_url, api_key="unused", max_retries=0)


def test_killed_backend_fails_fast_then_restarts(stack: ServeProcess, client: OpenAI) -> None:
    pid = httpx.get(f"http://127.0.0.1:{stack.port}/health").json()["models"]["k15-short"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        started = time.monotonic()
        r = httpx.post(f"{stack.base_url}/chat/completions", headers=stack.headers, timeout=30,
                       json={"model": "k15-short", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})  # fmt: skip
        status = r.status_code
        if status == 503:
            assert time.monotonic() - started < 2, "requests to a dead backend must fail fast"
            assert r.json()["error"]["code"] == "unavailable"
            break
        time.sleep(0.2)
    assert status == 503
    deadline = time.monotonic() + 300
    while True:
        state = httpx.get(f"http://127.0.0.1:{stack.port}/health").json()["models"]["k15-short"]
        if state["restarts"] == 1 and state["status"] == "ready":
            break
        assert time.monotonic() < deadline, f"backend was not restarted: {state}"
        time.sleep(1)
    assert client.chat.completions.create(model="k15-short", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert any("died" in line for line in stack.lines) and any("is back" in line for line in stack.lines)
