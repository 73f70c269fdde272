"""Fuzz ``k15 serve``'s OpenAI API with Hypothesis and check every response against the contract.

Requests are built field by field after the router's request types (``ChatRequest`` / ``CompletionRequest``:
model, messages or prompt, the sampling and reasoning fields, image parts) and go beyond them: wrong types, huge and negative numbers, unicode, deeply nested JSON,
truncated and non-UTF-8 bodies, wrong content types, unknown fields, ``n`` and ``max_tokens`` extremes, images of
every kind. Each response must be a well-formed OpenAI success (a chat / text completion, or an SSE stream ending
in ``[DONE]``) or a well-formed OpenAI error; a 5xx counts as a failure. Before and after: ``/health`` and the p50
latency of one small request.

    python -m tests.fuzz_api --requests 2000            # starts its own k15 serve on the tiny test model
    python -m tests.fuzz_api --base-url URL --api-key K --requests 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MODELS = ["k15-long", "k15-short", "k15", "nope", "", "K15-LONG"]
PATHS = ["/chat/completions", "/completions"]
WEIRD_NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                          st.sampled_from([0, -1, 1, 2**31, 2**63, 10**20, 1e308, -1e308, 0.5]))  # fmt: skip
JSON_LEAF = st.one_of(st.none(), st.booleans(), WEIRD_NUMBERS, st.text(max_size=40))
ANY_JSON = st.recursive(JSON_LEAF, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8),
                        kids, max_size=4), max_leaves=12)  # fmt: skip
SMALL_TOKENS = st.integers(1, 8)  # valid requests stay short: the suite measures the API, not generation speed
IMAGE_URLS = st.sampled_from([
    "data:image/png;base64,iVBORw0KGgo=", "data:image/png;base64,!!!notbase64", "data:text/plain;base64,aGk=",
    "data:image/png,raw", "http://example.com/a.png", "https://127.0.0.1/a.png", "file:///etc/passwd",
    "ftp://x/y.png", "javascript:alert(1)", "", "data:image/png;base64," + "A" * 5000,
])  # fmt: skip
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.sampled_from(["", "\x00", "👋🏽" * 20,
                                                                                       "\u202e\ufeff"])  # fmt: skip


def _messages() -> st.SearchStrategy[Any]:
    content = st.one_of(
        TEXT,
        st.lists(st.one_of(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}),
                           st.fixed_dictionaries({"type": st.just("image_url"),
                                                  "image_url": st.fixed_dictionaries({"url": IMAGE_URLS})}),
                           st.fixed_dictionaries({"type": st.just("image_url"), "image_url": IMAGE_URLS}),
                           ANY_JSON), max_size=3),
        ANY_JSON,
    )  # fmt: skip
    role = st.sampled_from(["user", "system", "assistant", "tool", "robot", ""])
    message = st.fixed_dictionaries({"role": role, "content": content})
    return st.one_of(st.lists(message, min_size=1, max_size=3), ANY_JSON)


def _sampling() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "max_tokens": st.one_of(SMALL_TOKENS, WEIRD_NUMBERS, TEXT),
        "max_completion_tokens": st.one_of(SMALL_TOKENS, WEIRD_NUMBERS),
        "n": st.one_of(st.integers(-3, 4), WEIRD_NUMBERS),
        "temperature": WEIRD_NUMBERS, "top_p": WEIRD_NUMBERS, "seed": WEIRD_NUMBERS,
        "stream": st.one_of(st.booleans(), ANY_JSON),
        "stream_options": st.one_of(st.just({"include_usage": True}), ANY_JSON),
        "reasoning_effort": st.one_of(st.sampled_from(["low", "medium", "high", "none", "max"]), ANY_JSON),
        "max_thinking_tokens": st.one_of(st.integers(-2, 8), WEIRD_NUMBERS),
        "stop": st.one_of(TEXT, st.lists(TEXT, max_size=5), ANY_JSON),
        "logprobs": ANY_JSON, "unknown_field": ANY_JSON,
    })  # fmt: skip


def _bounded(body: Any) -> Any:
    """A generated body whose generation stays short: a positive token limit becomes at most 8."""
    if isinstance(body, dict):
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int) and not isinstance(body[key], bool) and body[key] > 8:
                body[key] = 8
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = 4
        if isinstance(body.get("n"), int) and not isinstance(body["n"], bool) and body["n"] > 4:
            body["n"] = 4
    return body


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, raw body) of one request, valid or not."""
    path = draw(st.sampled_from(PATHS))
    kind = draw(st.sampled_from(["built", "built", "built", "any-json", "nested", "bytes", "truncated"]))
    headers = {"content-type": draw(st.sampled_from(["application/json"] * 4 + ["text/plain", "", "x/y"]))}
    model = draw(st.sampled_from(MODELS))
    body: Any
    if kind == "built":
        base = {"messages": draw(_messages())} if path == "/chat/completions" else {"prompt": draw(st.one_of(TEXT,
                st.lists(st.integers(-5, 60000), max_size=8), ANY_JSON))}  # fmt: skip
        body = _bounded({"model": model, **base, **draw(_sampling())})
    elif kind == "any-json":
        body = draw(ANY_JSON)
    elif kind == "nested":
        depth = draw(st.sampled_from([10, 1000, 50_000]))
        return path, headers, ('{"model": "k15-short", "messages": ' + "[" * depth + "]" * depth + "}").encode()
    elif kind == "bytes":
        return path, headers, draw(st.binary(max_size=200))
    else:
        raw = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        return path, headers, raw[: draw(st.integers(0, len(raw) - 1))].encode()
    return path, headers, json.dumps(body, allow_nan=False).encode()


@dataclass
class Report:
    """What the fuzzer saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    malformed: list[str] = field(default_factory=list)  # responses breaking the OpenAI contract
    server_errors: list[str] = field(default_factory=list)  # 5xx
    p50_before_s: float = 0.0
    p50_after_s: float = 0.0
    healthy_after: bool = False

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def _error_shape(payload: Any) -> bool:
    error = payload.get("error") if isinstance(payload, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


def contract_problem(response: httpx.Response, path: str) -> str | None:
    """Why ``response`` is not a well-formed OpenAI success or error, or None."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            return "stream does not end with [DONE]"
        for event in events[:-1]:
            chunk = json.loads(event)
            if "error" in chunk:
                return f"stream error event: {chunk['error']}"
            for choice in chunk.get("choices", []):
                delta = choice.get("delta")
                if delta is not None and ("reasoning" not in delta or "reasoning_content" not in delta):
                    return "delta without reasoning / reasoning_content"
        return None
    try:
        payload = response.json()
    except ValueError:
        return f"{response.status_code} with a body that is not JSON: {response.text[:80]!r}"
    if response.status_code != 200:
        return None if _error_shape(payload) else f"{response.status_code} error not OpenAI-shaped: {payload}"
    expected = "chat.completion" if path == "/chat/completions" else "text_completion"
    if payload.get("object") != expected or not isinstance(payload.get("choices"), list):
        return f"200 without a {expected}: {str(payload)[:120]}"
    usage = payload.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    if (details.get("reasoning_tokens") or 0) > usage.get("completion_tokens", 0):
        return "reasoning_tokens exceed completion_tokens"
    if expected == "chat.completion":
        for choice in payload["choices"]:
            message = choice.get("message") or {}
            if "reasoning" not in message or "reasoning_content" not in message:
                return "message without reasoning / reasoning_content"
    return None


def p50_latency(client: httpx.Client, base_url: str, headers: dict[str, str], count: int = 25) -> float:
    body = {"model": "k15-short", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0}
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        client.post(f"{base_url}/chat/completions", json=body, headers=headers).raise_for_status()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def fuzz(base_url: str, api_key: str | None, count: int, seed: int = 0) -> Report:
    """Send ``count`` generated requests to the k15 serve at ``base_url`` (…/v1) and check each response."""
    auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
    report = Report()
    with httpx.Client(timeout=120) as client:
        p50_latency(client, base_url, auth, 5)  # warm-up
        report.p50_before_s = p50_latency(client, base_url, auth)

        @settings(max_examples=count, deadline=None, database=None, derandomize=seed == 0,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(requests())
        def one(request: tuple[str, dict[str, str], bytes]) -> None:
            path, headers, raw = request
            response = client.post(f"{base_url}{path}", content=raw, headers={**headers, **auth})
            report.statuses[response.status_code] += 1
            if response.status_code >= 500:
                report.server_errors.append(f"{response.status_code} for {raw[:160]!r}: {response.text[:200]}")
            problem = contract_problem(response, path)
            if problem:
                report.malformed.append(f"{problem} — request {raw[:160]!r}")

        one()
        report.p50_after_s = p50_latency(client, base_url, auth)
        report.healthy_after = client.get(base_url.removesuffix("/v1") + "/health").json().get("status") == "ok"
    return report


def summary(report: Report) -> str:
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(report.statuses.items()))
    return (f"{report.requests} requests ({statuses}); malformed {len(report.malformed)}, 5xx "
            f"{len(report.server_errors)}; healthy after: {report.healthy_after}; p50 {report.p50_before_s * 1000:.0f} "
            f"→ {report.p50_after_s * 1000:.0f} ms")  # fmt: skip


def main() -> None:
    from tests.conftest import ServeProcess, build_tiny_model, engine_flags

    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--base-url", help="a running k15 serve (…/v1); default: start one on the tiny test model")
    args.add_argument("--api-key")
    args.add_argument("--requests", type=int, default=2000)
    opts = args.parse_args()
    server = None
    if opts.base_url is None:
        import tempfile
        from pathlib import Path

        from k15.models import resolve_model

        tiny = build_tiny_model(resolve_model(None), Path(tempfile.mkdtemp()) / "tiny")
        server = ServeProcess(
            ["--long", str(tiny), "--short", str(tiny), *engine_flags(max_model_len=512)], api_key="fuzz"
        )
        opts.base_url, opts.api_key = server.base_url, "fuzz"
    try:
        started = time.monotonic()
        report = fuzz(opts.base_url, opts.api_key, opts.requests)
        print(summary(report), f"in {time.monotonic() - started:.0f} s")
        for line in (report.malformed + report.server_errors)[:20]:
            print("  ", line)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
