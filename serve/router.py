"""The router: one OpenAI-compatible base URL in front of the long-CoT and long2short vLLM servers.

A thin layer: it checks what it must (auth, size, JSON, model, reasoning effort, images), picks the backend,
and streams vLLM's answer through, adding ``reasoning_content`` beside vLLM's ``reasoning`` field.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import anyio
import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from k15.images import url_problem
from k15.serve.backends import Backend
from k15.serve.config import ServeConfig
from k15.serve.metrics import Metrics
from k15.serve.protocol import ChatRequest, CompletionRequest, OpenAIError, image_urls, validate


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that closes its body iterator however the response ends.

    When the client goes away, Starlette stops iterating but leaves the generator to the garbage collector, so the
    upstream stream (and the generation in vLLM) could run on for a long time; closing it here aborts at once."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


T = TypeVar("T")
CLIENT_CLOSED = 499  # the status recorded for a request whose client went away (nginx's "client closed request")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None if the client goes away first — then ``work`` is cancelled, which closes the
    upstream connection and so aborts a non-streamed generation in vLLM, as closing a stream does."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task  # the upstream connection is closed when this returns
    return None if task.cancelled() else task.result()


def mirror_reasoning(choices: list[dict[str, Any]], key: str) -> None:
    """Give every chat message / delta both ``reasoning`` (vLLM's name) and ``reasoning_content`` (what
    DeepSeek-style clients read), null when there is no reasoning, in place."""
    for choice in choices:
        part = choice.get(key)
        if isinstance(part, dict):
            value = part.get("reasoning")
            value = value if value is not None else part.get("reasoning_content")
            part["reasoning"] = part["reasoning_content"] = value


class Router:
    """Resolves a request to a backend and proxies it."""

    def __init__(self, cfg: ServeConfig, backends: dict[str, Backend]) -> None:
        self.cfg = cfg
        self.backends = backends
        self.metrics = Metrics()
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s),
            limits=httpx.Limits(max_connections=2048, max_keepalive_connections=256),
        )

    # -- request checks -------------------------------------------------------------------------------------
    async def read_json(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.cfg.max_body_bytes:
            raise OpenAIError(413, f"request body of {declared} bytes exceeds the limit of {self.cfg.max_body_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.cfg.max_body_bytes:
                raise OpenAIError(413, f"request body exceeds the limit of {self.cfg.max_body_bytes} bytes")
        try:
            data = json.loads(body)
            json.dumps(data, ensure_ascii=False).encode()  # what goes upstream must encode: no lone surrogates
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OpenAIError(400, f"request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise OpenAIError(400, "request body is nested too deeply") from None
        except UnicodeEncodeError:
            raise OpenAIError(400, "request body has an unpaired UTF-16 surrogate escape (not valid Unicode)") from None
        return data

    def check_images(self, request: ChatRequest, backend: Backend, model: str) -> None:
        urls = image_urls(request)
        for url in urls:
            if (why := url_problem(url, self.cfg.image_url_allowlist)) is not None:
                raise OpenAIError(400, why, param="messages")
        if urls and not backend.multimodal:
            raise OpenAIError(400, f"model '{model}' is text-only and does not accept images", param="messages")

    def route(self, request: ChatRequest | CompletionRequest, body: dict[str, Any]) -> tuple[Backend, dict[str, Any]]:
        """Pick the backend and build the upstream body (model name, thinking budget)."""
        names = self.cfg.names
        budget = request.max_thinking_tokens
        if budget is None:
            budget = request.thinking_token_budget
        if request.model == names.auto:
            high = request.reasoning_effort in ("high", "medium")
            target = names.long if high else names.short
            if request.reasoning_effort == "medium" and budget is None:
                budget = self.cfg.medium_thinking_budget if self.backends[target].thinks else None
        elif request.model in (names.long, names.short):
            target = request.model
        else:
            served = ", ".join(self.backends)
            raise OpenAIError(
                404, f"model '{request.model}' does not exist; served: {served}", param="model", code="model_not_found"
            )
        backend = self.backends[target]
        if budget is not None and not backend.thinks:
            raise OpenAIError(
                400, f"model '{target}' is a {backend.kind} checkpoint without thinking; no thinking budget applies",
                param="max_thinking_tokens",
            )  # fmt: skip
        upstream = {k: v for k, v in body.items() if k not in ("reasoning_effort", "max_thinking_tokens")}
        upstream["model"] = target
        if budget is not None:
            upstream["thinking_token_budget"] = budget
        return backend, upstream

    # -- proxying -------------------------------------------------------------------------------------------
    async def proxy(self, request: Request, kind: type[ChatRequest | CompletionRequest], path: str) -> Response:
        started = time.monotonic()
        model = "-"
        try:
            body = await self.read_json(request)
            parsed = validate(kind, body)
            model = parsed.model
            backend, upstream = self.route(parsed, body)
            if isinstance(parsed, ChatRequest):
                self.check_images(parsed, backend, upstream["model"])
            if not backend.ready.is_set():
                raise OpenAIError(503, f"model '{upstream['model']}' is restarting; retry shortly", code="unavailable")
            url = f"{backend.base_url}{path}"
            if parsed.stream:
                return await self.stream(backend, url, upstream, parsed, model, path, started)
            response = await unless_disconnected(request, self.client.post(url, json=upstream))
            if response is None:
                self.metrics.observe(model, path, CLIENT_CLOSED, time.monotonic() - started)
                return Response(status_code=CLIENT_CLOSED)
        except OpenAIError as exc:
            self.metrics.observe(model, path, exc.status, time.monotonic() - started)
            return exc.response()
        except httpx.TransportError as exc:
            self.metrics.observe(model, path, 503, time.monotonic() - started)
            message = f"model '{model}' is unavailable: {type(exc).__name__}"
            return OpenAIError(503, message, code="unavailable").response()
        self.metrics.observe(model, path, response.status_code, time.monotonic() - started)
        if response.status_code != 200:
            return Response(response.content, response.status_code, media_type="application/json")
        data = response.json()
        data["model"] = upstream["model"]
        mirror_reasoning(data.get("choices", []), "message")
        self.metrics.count_usage(model, data.get("usage"))
        return JSONResponse(data)

    async def stream(
        self, backend: Backend, url: str, upstream: dict[str, Any], parsed: ChatRequest | CompletionRequest,
        model: str, path: str, started: float,
    ) -> Response:  # fmt: skip
        wants_usage = bool((parsed.stream_options or {}).get("include_usage"))
        upstream["stream_options"] = {**(parsed.stream_options or {}), "include_usage": True}
        response = await self.client.send(self.client.build_request("POST", url, json=upstream), stream=True)
        if response.status_code != 200:
            content = await response.aread()
            await response.aclose()
            self.metrics.observe(model, path, response.status_code, time.monotonic() - started)
            return Response(content, response.status_code, media_type="application/json")
        return ClosingStreamingResponse(
            self.relay(response, backend, wants_usage, model, path, started, (backend.names[0], upstream["model"])),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def relay(
        self, response: httpx.Response, backend: Backend, wants_usage: bool, model: str, path: str, started: float,
        rename: tuple[str, str],
    ) -> AsyncIterator[str]:  # fmt: skip
        """Pass SSE events through; closing ``response`` (also on client disconnect) aborts the generation.

        ``rename``: (vLLM's name, served name) — an engine serving several names reports its first one. When the
        backend dies (its supervisor counts a restart within 0.5 s), the stream ends with an error event at once,
        without relaying what the dead server left in the socket's buffer (seconds of tokens under load).
        """
        status = 200
        old, new = (f'"model":"{name}"' for name in rename)
        life = backend.restarts
        try:
            async for line in response.aiter_lines():
                if backend.restarts != life:
                    raise httpx.ReadError("the backend process died")
                if old != new:
                    line = line.replace(old, new, 1)
                if not line.startswith("data: {"):
                    if line:
                        yield line + "\n\n"
                    continue
                if '"delta"' not in line and '"usage":{' not in line:
                    yield line + "\n\n"
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    self.metrics.count_usage(model, chunk["usage"])
                    if not wants_usage and not chunk.get("choices"):
                        continue
                    if not wants_usage:
                        chunk["usage"] = None
                mirror_reasoning(chunk.get("choices", []), "delta")
                yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
        except httpx.TransportError as exc:
            status = 503
            error = {"error": {"message": f"backend failed mid-stream: {type(exc).__name__}", "type": "server_error"}}
            yield f"data: {json.dumps(error)}\n\n"
        except (GeneratorExit, anyio.get_cancelled_exc_class()):
            status = CLIENT_CLOSED  # the client went away mid-stream
            raise
        finally:
            with anyio.CancelScope(shield=True):  # runs even when a client disconnect cancelled the relay
                await response.aclose()
            self.metrics.observe(model, path, status, time.monotonic() - started)


def create_app(cfg: ServeConfig, backends: dict[str, Backend]) -> FastAPI:
    """The router app; ``backends`` maps each served name (long, short) to its backend."""
    router = Router(cfg, backends)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await router.client.aclose()

    def require_key(request: Request) -> None:
        if cfg.api_key and request.headers.get("authorization", "") != f"Bearer {cfg.api_key}":
            raise OpenAIError(401, "invalid or missing API key", code="invalid_api_key")

    app = FastAPI(title="k15", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.router = router
    # The key is checked by a dependency, not an HTTP middleware: Starlette's BaseHTTPMiddleware delays streamed
    # responses and hides client disconnects, which would keep abandoned generations running in vLLM.
    api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    @api.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await router.proxy(request, ChatRequest, "/v1/chat/completions")

    @api.post("/completions")
    async def completions(request: Request) -> Response:
        return await router.proxy(request, CompletionRequest, "/v1/completions")

    @api.get("/models")
    async def models() -> dict[str, Any]:
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "k15",
                "root": str(b.path),
                "kind": b.kind,
                "mode": "short" if name == cfg.names.short else "long",
                "multimodal": b.multimodal,
                "thinks": b.thinks,
            }
            for name, b in backends.items()
        ]
        auto = {"long": cfg.names.long, "short": cfg.names.short}
        data.append({"id": cfg.names.auto, "object": "model", "created": created, "owned_by": "k15", "kind": "auto",
                     "routes": auto})  # fmt: skip
        return {"object": "list", "data": data}

    app.include_router(api)

    @app.get("/health")  # open, for load balancers
    async def health() -> JSONResponse:
        state = {name: b.status() for name, b in backends.items()}
        ok = all(s["status"] == "ready" for s in state.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "models": state}, status_code=200 if ok else 503)

    @app.get("/metrics")  # open, for Prometheus
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(router.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return OpenAIError(404, f"no route {request.method} {request.url.path}").response()

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return OpenAIError(405, f"method {request.method} not allowed on {request.url.path}").response()

    return app
