"""The router's request checks and OpenAI-style errors (the thin protocol layer in front of vLLM)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]


class OpenAIError(Exception):
    """An error answered as OpenAI does: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error"
        )
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


class _Request(BaseModel):
    """Fields the router reads; everything else passes through to vLLM untouched."""

    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool = False
    max_tokens: int | None = Field(None, gt=0)
    reasoning_effort: ReasoningEffort | None = None
    max_thinking_tokens: int | None = Field(None, ge=0)
    thinking_token_budget: int | None = Field(None, ge=0)
    stream_options: dict[str, Any] | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0)


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]]


def validate(model: type[_Request], body: Any) -> _Request:
    """Check ``body`` against ``model``; the first problem becomes a 400 naming the field."""
    if not isinstance(body, dict):
        raise OpenAIError(400, f"request body must be a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body)
    except RecursionError:
        raise OpenAIError(400, "request body is nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise OpenAIError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from None


def image_urls(request: ChatRequest) -> list[str]:
    """Every ``image_url`` part's URL in the conversation."""
    urls = []
    for message in request.messages:
        for part in message.content if isinstance(message.content, list) else []:
            if part.type == "image_url":
                image = (part.model_extra or {}).get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if not isinstance(url, str):
                    raise OpenAIError(400, "image_url part without a url", param="messages", code="invalid_value")
                urls.append(url)
    return urls
