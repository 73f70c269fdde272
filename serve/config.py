"""Settings of ``k15 serve``: which checkpoints, under which names, and how the endpoint behaves."""

from __future__ import annotations

from pydantic import Field

from k15.config import Config
from k15.engine import EngineConfig


class ModelNames(Config):
    long: str = "k15-long"
    short: str = "k15-short"
    auto: str = Field("k15", description="routes by reasoning_effort: high → long, medium → long with a budget")


class ServeConfig(Config):
    long: str | None = Field(None, description="long-CoT checkpoint; None: newest in the runs dir, else the default")
    short: str | None = Field(None, description="long2short checkpoint; None: newest in the runs dir, else the default")
    names: ModelNames = Field(default_factory=ModelNames)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    api_key: str | None = Field(None, description="require 'Authorization: Bearer KEY'; env K15_API_KEY")
    medium_thinking_budget: int = Field(1024, gt=0, description="thinking tokens for reasoning_effort=medium")
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    image_url_allowlist: list[str] = Field(default_factory=list, description="hosts allowed in http(s) image URLs")
    startup_timeout_s: float = Field(900, gt=0)
    restart_backoff_s: float = Field(2.0, ge=0)
    request_timeout_s: float = Field(3600, gt=0)
    connect_timeout_s: float = Field(30, gt=0, description="for a connection to a backend: a dead one refuses at "
                                     "once; a live one on a saturated machine may take seconds to accept")  # fmt: skip
    engine: EngineConfig = Field(default_factory=EngineConfig)
    split_cpus: bool = Field(True, description="vllm-cpu: give each engine its own share of the cores (else every "
                             "engine runs on all, and two decoding at once stall each other)")  # fmt: skip
