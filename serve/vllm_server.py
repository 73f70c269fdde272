"""One real vLLM OpenAI server (``python -m vllm.entrypoints.openai.api_server``) as a supervised child process."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from k15 import paths
from k15.engine import EngineConfig
from k15.net import free_port


class ServerError(RuntimeError):
    """The vLLM server failed to start or died; the message carries the tail of its log."""


_LOG_PREFIX = re.compile(r"^\([^)]*\)\s+[A-Z]+\s+\S+\s+\S+\s+\[[^\]]*\]\s*")  # "(APIServer pid=1) ERROR 11-22 …"
_EXCEPTION = re.compile(r"^[\w.]*(Error|Exception)\b: ")


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when its parent dies, so a killed supervisor leaves no orphan."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child_setup(cpus: list[int] | None) -> None:
    """In the child before exec: die with the parent; keep to ``cpus`` if given (inherited by the engine core)."""
    _die_with_parent()
    if cpus:
        os.sched_setaffinity(0, cpus)


class VLLMServer:
    """Start, health-check and stop one vLLM OpenAI server for one checkpoint.

    The child runs in its own process group; :meth:`stop` signals the whole group (API server and engine
    core), escalating from SIGTERM to SIGKILL, so nothing is left behind.
    """

    def __init__(
        self,
        model: Path,
        served_names: str | list[str],
        engine: EngineConfig | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.model = Path(model)
        self.served_names = [served_names] if isinstance(served_names, str) else list(served_names)
        self.served_name = self.served_names[0]
        self.engine = engine or EngineConfig()
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = extra_args or []
        self.cpus: list[int] | None = None  # the cores it may use (the serving stack's split_cpus); None: all
        self.log_path = paths.logs_dir() / f"vllm-{self.served_name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model),
            "--served-model-name", *self.served_names,
            "--host", self.host,
            "--port", str(self.port),
            *self.engine.server_args(self.model),
        ]  # fmt: skip
        return cmd + self.extra_args

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.engine.server_env()}
        if self.cpus:  # one OpenMP thread per core it may use
            env["OMP_NUM_THREADS"] = str(len(self.cpus))
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=functools.partial(_child_setup, self.cpus), env=env,
        )  # fmt: skip
        log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def failure_summary(self) -> str:
        """vLLM's own reason (the last exception line that is not a 'see above' wrapper) and the full log's path."""
        lines = [_LOG_PREFIX.sub("", line).strip() for line in self.log_tail(300).splitlines()]
        errors = [line for line in lines if _EXCEPTION.search(line) or line.startswith("Value error")]
        specific = [line for line in errors if "root cause" not in line and "stack trace" not in line]
        reason = (specific or errors or [line for line in lines if line] or ["(empty log)"])[-1]
        return f"{reason}\n  full log: {self.log_path}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 600, progress: bool = False, abort: threading.Event | None = None) -> float:
        """Block until ``/health`` answers 200; return the seconds it took. Raises if the child exits or on abort."""
        start = time.monotonic()
        next_note = start + 15
        while time.monotonic() - start < timeout:
            if abort is not None and abort.is_set():
                self.stop()
                raise ServerError(f"start of vLLM for {self.served_name} was interrupted")
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise ServerError(f"vLLM server for {self.served_name} exited ({code}): {self.failure_summary()}")
            if self.healthy():
                return time.monotonic() - start
            if progress and time.monotonic() > next_note:
                print(f"  … starting vLLM for {self.served_name} ({time.monotonic() - start:.0f} s)", flush=True)
                next_note += 15
            time.sleep(0.5)
        self.stop()
        raise ServerError(
            f"vLLM server for {self.served_name} not healthy after {timeout:.0f} s: {self.failure_summary()}"
        )

    def stop(self, timeout: float = 30) -> None:
        """Terminate the server's process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group (engine core)
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
