"""``k15 ui``: serve the app on loopback; without an endpoint, start ``k15 serve`` too and stop it on exit."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from k15.config import Config
from k15.serve.config import ServeConfig


class UIConfig(Config):
    endpoint: str | None = Field(None, description="OpenAI-compatible base URL; None: start k15 serve")
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=0, le=65535)
    results: list[str] = Field(default_factory=list, description="evalsuite result dirs preloaded in Results")
    data_dir: str | None = Field(None, description="local task data for example prompts (else K15_DATA_DIR / hub)")
    auth: str | None = Field(None, description="'user:password' to require a login")
    concurrency: int = Field(16, ge=1, description="generations running at once across browser sessions")
    serve: ServeConfig = Field(default_factory=lambda: ServeConfig(port=0))


def run(cfg: UIConfig) -> int:
    from contextlib import nullcontext

    from k15.net import free_port
    from k15.serve.stack import ServingStack
    from k15.ui.app import App

    stack = ServingStack(cfg.serve) if cfg.endpoint is None else None
    with stack or nullcontext():
        endpoint = cfg.endpoint or stack.base_url  # type: ignore[union-attr]
        api_key = cfg.api_key or (cfg.serve.api_key if stack else None)
        data_dir = Path(cfg.data_dir) if cfg.data_dir else None
        app = App(endpoint, api_key, [Path(p) for p in cfg.results], data_dir, cfg.serve.names).build()
        auth = tuple(cfg.auth.split(":", 1)) if cfg.auth else None
        port = cfg.port or free_port(cfg.host)  # 0: a free one, as k15 serve does (Gradio cannot bind 0)
        print(f"k15 ui: http://{cfg.host}:{port}  (models at {endpoint})", flush=True)
        app.queue(default_concurrency_limit=cfg.concurrency).launch(
            server_name=cfg.host, server_port=port, share=False, auth=auth, show_error=True, quiet=True
        )
    return 0
