"""Prometheus metrics of the router: requests, errors, latency and tokens by served model."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "k15_requests", "Requests by model, endpoint and status", ["model", "endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "k15_errors", "Error answers by model and status", ["model", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "k15_request_seconds", "Time from request to the last byte, by model", ["model"], registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
        )  # fmt: skip
        self.tokens = Counter("k15_tokens", "Tokens by model and type", ["model", "type"], registry=self.registry)

    def observe(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(model, endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(model, str(status)).inc()
        self.latency.labels(model).observe(seconds)

    def count_usage(self, model: str, usage: dict | None) -> None:
        if not usage:
            return
        self.tokens.labels(model, "prompt").inc(usage.get("prompt_tokens") or 0)
        self.tokens.labels(model, "completion").inc(usage.get("completion_tokens") or 0)
        details = usage.get("completion_tokens_details") or {}
        self.tokens.labels(model, "reasoning").inc(details.get("reasoning_tokens") or 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
