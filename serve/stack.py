"""The serving stack behind ``k15 serve``: resolve the checkpoint, run vLLM, stop cleanly on signals."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

from k15.chat import VLLM_REASONING_PARSER
from k15.checkpoint import Kind, read_info
from k15.models import resolve_model
from serve.config import ServeConfig
from serve.vllm_server import VLLMServer, free_port


def reasoning_parser_for(model: Path) -> str | None:
    """Checkpoints k15 trained think in ``<think>`` blocks; base models get no reasoning parser."""
    info = read_info(model)
    return VLLM_REASONING_PARSER if info and info.kind in (Kind.long_cot, Kind.long2short) else None


def build_server(cfg: ServeConfig) -> VLLMServer:
    model = resolve_model(cfg.model)
    return VLLMServer(
        model,
        cfg.served_name,
        engine=cfg.engine,
        host=cfg.host,
        port=cfg.port or free_port(cfg.host),
        reasoning_parser=reasoning_parser_for(model),
    )


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(cfg: ServeConfig) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the process exit code."""
    server = build_server(cfg)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    print(f"k15 serve: starting vLLM for {server.model} as '{cfg.served_name}' (log: {server.log_path})", flush=True)
    try:
        server.start()
        seconds = server.wait_healthy(cfg.startup_timeout_s, progress=True)
        print(f"k15 serve: ready in {seconds:.1f} s — OpenAI base URL {server.base_url}/v1", flush=True)
        while server.alive():
            time.sleep(1)
        print(f"k15 serve: vLLM exited unexpectedly: {server.failure_summary()}", flush=True)
        return 1
    except (KeyboardInterrupt, _Stop):
        print("k15 serve: stopping …", flush=True)
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
