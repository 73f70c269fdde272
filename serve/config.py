"""Settings of ``k15 serve``."""

from __future__ import annotations

from pydantic import Field

from k15.config import Config
from k15.engine import EngineConfig


class ServeConfig(Config):
    model: str | None = Field(None, description="checkpoint directory; None or 'default': the embedded default")
    served_name: str = "k15"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    startup_timeout_s: float = Field(900, gt=0)
    engine: EngineConfig = Field(default_factory=EngineConfig)
