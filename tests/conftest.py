"""Shared fixtures: a test-local K15_HOME, the embedded default checkpoint and a tiny random model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


def session_processes(sid: int) -> list[int]:
    """Pids of the live (not zombie) processes of session ``sid``."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid=,stat="], capture_output=True, text=True).stdout
    return [int(p) for p, s, st in (line.split()[:3] for line in out.splitlines()) if int(s) == sid and "Z" not in st]


def wait_session_gone(sid: int, seconds: float = 10) -> list[int]:
    """Wait up to ``seconds`` for session ``sid`` to have no live process; return the pids still alive."""
    deadline, left = time.monotonic() + seconds, session_processes(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = session_processes(sid)
    return left


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


@pytest.fixture(scope="session")
def arith(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo task's splits, small: written by the real ``k15 data demo`` command."""
    out = tmp_path_factory.mktemp("data") / "arith"
    result = run_k15("data", "demo", str(out), "--train", "40", "--heldout", "10", "--sft", "96")
    assert result.returncode == 0, result.stderr
    return out


def make_checkpoint(source: Path, out: Path, kind: str, k15_template: bool = True) -> Path:
    """A copy of ``source`` labelled as a k15 checkpoint of ``kind`` (with the k15 think template)."""
    import shutil

    from transformers import AutoTokenizer

    from k15.chat import apply_k15_template
    from k15.checkpoint import CheckpointInfo, Kind, write_info

    shutil.copytree(source, out)
    if k15_template:
        tokenizer = AutoTokenizer.from_pretrained(out)
        apply_k15_template(tokenizer)
        tokenizer.save_pretrained(out)
    write_info(out, CheckpointInfo(kind=Kind(kind), name=out.name, base_model=str(source)))
    return out


class ServeProcess:
    """A real ``k15 serve`` process on loopback, as users start it."""

    def __init__(self, args: list[str], api_key: str | None = None, timeout: float = 400) -> None:
        import threading

        from k15.net import free_port

        self.port = free_port()
        self.api_key = api_key
        exe = Path(sys.executable).parent / "k15"
        cmd = [str(exe), "serve", "--port", str(self.port), *args] + (["--api-key", api_key] if api_key else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.lines.append(line)
                if "ready — OpenAI base URL" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("k15 serve did not become ready:\n" + "".join(self.lines))
        import psutil

        self.children = psutil.Process(self.proc.pid).children(recursive=True)  # the vLLM servers it supervises

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def stop(self) -> int:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)

    def stop_leaving_no_orphans(self) -> None:
        """SIGTERM; ``k15 serve`` must exit 0 and take every vLLM process it started with it."""
        import psutil

        assert self.stop() == 0, "".join(self.lines)
        _gone, alive = psutil.wait_procs(self.children, timeout=30)
        assert not alive, f"orphan processes after SIGTERM: {[p.pid for p in alive]}"


TEST_KEY = "test-key"


def engine_flags(max_model_len: int) -> list[str]:
    """``k15 serve`` engine settings for test stacks: eager start (~40 s, not ~2 min) and a small KV-cache share,
    so several test engines fit in RAM at once."""
    return ["--set", "engine.enforce_eager=true", "--set", f"engine.max_model_len={max_model_len}",
            "--set", "engine.gpu_memory_utilization=0.1"]  # fmt: skip


MEDIUM_BUDGET = 4


@pytest.fixture(scope="session")
def tiny_stack(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """``k15 serve`` with long = a tiny k15 long-CoT checkpoint, short = the tiny plain HF model, API key set.

    Shared by the serve and evalsuite tests; stopping it must leave no process behind."""
    root = tmp_path_factory.mktemp("serve")
    long = make_checkpoint(tiny_model, root / "long", "long-cot")
    server = ServeProcess(
        ["--long", str(long), "--short", str(tiny_model), *engine_flags(max_model_len=4096),
         "--set", f"medium_thinking_budget={MEDIUM_BUDGET}", "--set", "max_body_bytes=200000",
         "--set", "restart_backoff_s=0"],
        api_key=TEST_KEY,
    )  # fmt: skip
    yield server
    server.stop_leaving_no_orphans()


@pytest.fixture(scope="session")
def default_stack(default_model: Path):
    """``k15 serve`` on the embedded default model (one engine for both names), for the cancellation tests.

    Not the tiny model: on 2 cores its engine outruns vLLM's own HTTP front end (4000 tokens done while the client
    has read a few hundred), so an abort arrives after the generation ended. The default model generates
    ~60 tokens/s here, slower than the streams are read, as real models do. Stopping it must leave no process
    behind."""
    server = ServeProcess(engine_flags(max_model_len=4096))
    yield server
    server.stop_leaving_no_orphans()


@pytest.fixture(scope="session")
def tiny_vlm(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Idefics3 vision-language model (tests/vlm.py)."""
    from tests.vlm import build_tiny_vlm

    return build_tiny_vlm(default_model, tmp_path_factory.mktemp("vlm") / "tiny-vlm")


@pytest.fixture(scope="session")
def vlm_stack(tiny_vlm: Path):
    """``k15 serve`` on the tiny random VLM under every name; 127.0.0.1 image host allowed."""
    vlm = tiny_vlm
    server = ServeProcess(
        ["--long", str(vlm), "--short", str(vlm), *engine_flags(max_model_len=1024),
         "--set", "image_url_allowlist=[127.0.0.1]"]
    )  # fmt: skip
    yield server
    assert server.stop() == 0
