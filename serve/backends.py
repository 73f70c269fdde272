"""Backends: one supervised vLLM server per checkpoint, each answering under one or more served names."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from k15.chat import THINKING_MARKERS
from k15.checkpoint import THINKING_KINDS, is_multimodal, read_info
from k15.engine import EngineConfig
from k15.serve.vllm_server import ServerError, VLLMServer

REASONING_PARSER_PLUGIN = Path(__file__).with_name("reasoning_parser.py")


def checkpoint_kind(path: Path) -> str:
    info = read_info(path)
    return info.kind.value if info else "unknown"


def reasoning_args(path: Path) -> list[str]:
    """vLLM flags for k15-trained checkpoints: the think-tag parser and the thinking-budget markers."""
    info = read_info(path)
    if not info or info.kind not in THINKING_KINDS:
        return []
    markers = json.dumps(THINKING_MARKERS)
    return ["--reasoning-parser-plugin", str(REASONING_PARSER_PLUGIN), "--reasoning-parser", "k15",
            "--reasoning-config", markers]  # fmt: skip


@dataclass
class Backend:
    """A checkpoint served by vLLM under ``names``; restarted by :meth:`supervise` when it dies."""

    path: Path
    names: list[str]
    engine: EngineConfig
    host: str = "127.0.0.1"
    startup_timeout_s: float = 900
    restart_backoff_s: float = 2.0
    kind: str = field(init=False)
    multimodal: bool = field(init=False)
    ready: threading.Event = field(init=False, default_factory=threading.Event)
    restarts: int = field(init=False, default=0)
    server: VLLMServer = field(init=False)

    def __post_init__(self) -> None:
        self.kind = checkpoint_kind(self.path)
        self.multimodal = is_multimodal(self.path)
        self.server = VLLMServer(
            self.path, self.names, engine=self.engine, host=self.host, extra_args=reasoning_args(self.path)
        )

    @property
    def thinks(self) -> bool:
        """k15-trained checkpoints think in ``<think>`` blocks and accept a thinking budget."""
        return self.kind in THINKING_KINDS

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def status(self) -> dict[str, object]:
        """What ``/health`` reports: state, restarts, and the engine's process and URL (for operators)."""
        process = self.server.process
        return {"status": "ready" if self.ready.is_set() else "down", "restarts": self.restarts,
                "pid": process.pid if process else None, "url": self.base_url}  # fmt: skip

    def launch(self) -> None:
        """Start the vLLM process. Call it from a long-lived thread: Linux ties the child's parent-death
        signal to the launching thread, so a short-lived thread would take the server down with it."""
        self.ready.clear()
        self.server.start()

    def wait_ready(self, abort: threading.Event | None = None) -> float:
        """Block until vLLM is healthy (or ``abort`` is set); returns the seconds it took."""
        seconds = self.server.wait_healthy(self.startup_timeout_s, abort=abort)
        self.ready.set()
        return seconds

    def stop(self, grace_s: float = 30) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``grace_s`` seconds."""
        self.ready.clear()
        self.server.stop(grace_s)

    def supervise(self, stopping: threading.Event, on_event=print) -> None:
        """Watch the server; when it dies, mark it down (requests fail fast) and restart it with backoff."""
        while not stopping.wait(0.5):
            if self.server.alive():
                continue
            self.ready.clear()
            self.restarts += 1
            on_event(f"k15 serve: backend {self.names[0]} died ({self.server.failure_summary()}); restarting")
            self.server.stop()
            time.sleep(self.restart_backoff_s)
            if stopping.is_set():
                return
            try:
                self.launch()
                seconds = self.wait_ready(abort=stopping)
                on_event(f"k15 serve: backend {self.names[0]} is back after {seconds:.1f} s")
            except ServerError as exc:
                on_event(f"k15 serve: restart of {self.names[0]} failed: {exc}")
