"""``k15 serve`` end to end: real vLLM servers behind the router, driven by real clients (openai, curl, lm-eval)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import httpx
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.conftest import MEDIUM_BUDGET, ServeProcess
from tests.conftest import TEST_KEY as KEY

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def stack(tiny_stack: ServeProcess) -> ServeProcess:
    """long = a tiny k15 long-CoT checkpoint (think template, reasoning parser); short = the tiny base model."""
    return tiny_stack


@pytest.fixture()
def client(stack: ServeProcess) -> OpenAI:
    return OpenAI(base_url=stack.base_url, api_key=KEY, max_retries=0)


def thinking_request(**extra):
    return {
        "messages": [{"role": "user", "content": "Think, then answer."}],
        "max_tokens": 24, "temperature": 0, "extra_body": {"ignore_eos": True, **extra},
    }  # fmt: skip


def test_models_and_health(stack: ServeProcess) -> None:
    models = httpx.get(f"{stack.base_url}/models", headers=stack.headers).json()["data"]
    kinds = {m["id"]: m["kind"] for m in models}
    assert kinds == {"k15-long": "long-cot", "k15-short": "unknown", "k15": "auto"}  # short: a plain HF checkpoint
    assert {m["id"]: m.get("mode") for m in models} == {"k15-long": "long", "k15-short": "short", "k15": None}
    assert all(m["root"] for m in models if m["id"] != "k15")
    health = httpx.get(f"http://127.0.0.1:{stack.port}/health").json()
    assert health["status"] == "ok" and set(health["models"]) == {"k15-long", "k15-short"}


def test_each_engine_runs_on_its_own_cores(stack: ServeProcess) -> None:
    """``split_cpus`` (the default): two engines decoding at once do not share cores (docs/serve.md)."""
    import os

    import psutil

    allowed = set(os.sched_getaffinity(0))
    cpus = {}
    for name, state in httpx.get(f"http://127.0.0.1:{stack.port}/health").json()["models"].items():
        server = psutil.Process(state["pid"])
        shares = {frozenset(p.cpu_affinity()) for p in [server, *server.children(recursive=True)]}
        assert len(shares) == 1, f"{name}: its engine core keeps the server's cores: {shares}"
        cpus[name] = shares.pop()
    if len(allowed) >= 2:
        assert not cpus["k15-long"] & cpus["k15-short"] and cpus["k15-long"] | cpus["k15-short"] == allowed, cpus
        assert any("k15-long runs on CPUs" in line for line in stack.lines)
    else:  # fewer cores than engines: nothing pinned
        assert all(share == allowed for share in cpus.values())


def test_thinking_budget_splits_reasoning_from_answer(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="k15-long", **thinking_request(max_thinking_tokens=5))
    message = reply.choices[0].message.model_dump()
    assert reply.model == "k15-long"
    assert message["reasoning"] and message["reasoning_content"] == message["reasoning"]
    assert message["content"], "the budget closes thinking, so an answer follows"
    reasoning_tokens = reply.usage.completion_tokens_details.reasoning_tokens
    assert 1 <= reasoning_tokens <= 6 and reply.usage.completion_tokens == 24


def test_streaming_carries_reasoning_and_content(client: OpenAI) -> None:
    reasoning, content, usage = [], [], None
    stream = client.chat.completions.create(
        model="k15-long", stream=True, stream_options={"include_usage": True}, **thinking_request(max_thinking_tokens=5)
    )
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            if delta.get("reasoning"):
                assert delta["reasoning_content"] == delta["reasoning"]
                reasoning.append(delta["reasoning"])
            content.append(delta.get("content") or "")
    assert reasoning and "".join(content)
    assert usage is not None and 1 <= usage.completion_tokens_details.reasoning_tokens <= 6


def test_every_message_and_delta_carries_both_reasoning_fields(stack: ServeProcess) -> None:
    """The response contract: ``reasoning`` and ``reasoning_content`` on every chat message and stream delta (null
    when there is none, as from a base checkpoint), usage adding up, ``model`` naming who answered."""
    for model in ("k15-short", "k15-long"):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6}
        reply = httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=stack.headers).json()
        message = reply["choices"][0]["message"]
        assert "reasoning" in message and message["reasoning_content"] == message["reasoning"], message
        assert reply["model"] == model
        usage = reply["usage"]
        assert usage["completion_tokens"] >= (
            (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
        )
        with httpx.stream("POST", f"{stack.base_url}/chat/completions", json={**body, "stream": True},
                          headers=stack.headers) as r:  # fmt: skip
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        deltas = [choice["delta"] for chunk in chunks for choice in chunk["choices"]]
        assert deltas and all("reasoning" in d and d["reasoning_content"] == d["reasoning"] for d in deltas), deltas
        assert all(chunk["model"] == model for chunk in chunks)


def test_usage_chunk_only_when_asked(stack: ServeProcess) -> None:
    body = {"model": "k15-short", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", json=body, headers=stack.headers) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert not any(json.loads(e[6:]).get("usage") for e in events[:-1])


@pytest.mark.parametrize(
    ("effort", "routed"), [("high", "k15-long"), ("medium", "k15-long"), ("low", "k15-short"), (None, "k15-short")]
)
def test_auto_model_routes_by_reasoning_effort(client: OpenAI, effort: str | None, routed: str) -> None:
    extra = {"reasoning_effort": effort} if effort else {}
    reply = client.chat.completions.create(model="k15", **thinking_request(), **extra)
    assert reply.model == routed
    if effort == "medium":  # long with the configured thinking budget
        assert reply.usage.completion_tokens_details.reasoning_tokens <= MEDIUM_BUDGET + 1
    if effort == "high":
        assert reply.usage.completion_tokens_details.reasoning_tokens == 24  # no budget: thinks to the limit


def test_completions_pass_sampling_parameters_through(client: OpenAI) -> None:
    args = {"model": "k15-short", "prompt": "1, 2, 3,", "max_tokens": 8, "temperature": 1.0, "seed": 7}
    first = client.completions.create(n=2, logprobs=2, **args)
    again = client.completions.create(n=2, logprobs=2, **args)
    assert len(first.choices) == 2 and first.choices[0].logprobs.top_logprobs
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # seed honoured
    stopped = client.completions.create(model="k15-short", prompt="a", max_tokens=8, stop=[first.choices[0].text[:1]])
    assert stopped.choices[0].finish_reason in ("stop", "length")


def test_async_client_concurrent_requests(stack: ServeProcess) -> None:
    async def run() -> list[str]:
        client = AsyncOpenAI(base_url=stack.base_url, api_key=KEY, max_retries=0)
        replies = await asyncio.gather(
            *(client.chat.completions.create(model=m, messages=[{"role": "user", "content": str(i)}], max_tokens=4)
              for i, m in enumerate(["k15-long", "k15-short"] * 4))
        )  # fmt: skip
        await client.close()
        return [r.model for r in replies]

    assert asyncio.run(run()) == ["k15-long", "k15-short"] * 4


def test_curl(stack: ServeProcess) -> None:
    body = json.dumps({"model": "k15-short", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    auth = ["-H", f"Authorization: Bearer {KEY}", "-H", "Content-Type: application/json"]
    plain = subprocess.run(["curl", "-sS", f"{stack.base_url}/chat/completions", *auth, "-d", body],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert json.loads(plain.stdout)["choices"][0]["message"]["role"] == "assistant"
    streamed = subprocess.run(
        ["curl", "-sSN", f"{stack.base_url}/chat/completions", *auth, "-d", json.dumps({**json.loads(body), "stream": True})],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert streamed.stdout.rstrip().endswith("data: [DONE]")


def test_lm_eval_local_chat_completions_client(stack: ServeProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.models.api_models import JsonChatStr
    from lm_eval.models.openai_completions import LocalChatCompletion

    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # how lm-eval's API models take the key
    lm = LocalChatCompletion(
        base_url=f"{stack.base_url}/chat/completions", model="k15-short",
        tokenizer_backend=None, tokenized_requests=False, max_gen_toks=6,
    )  # fmt: skip
    prompt = JsonChatStr(json.dumps([{"role": "user", "content": "Say hi"}]))
    requests = [
        Instance("generate_until", None, (prompt, {"until": ["\n\n"], "max_gen_toks": 6}), idx=i) for i in range(2)
    ]
    outputs = lm.generate_until(requests, disable_tqdm=True)
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)


BAD_REQUESTS = [
    ("malformed JSON", b'{"model": "k15", "messages": [', 400),
    ("body not an object", b"[1, 2]", 400),
    ("messages wrong type", {"model": "k15", "messages": "hello"}, 400),
    ("max_tokens wrong type", {"model": "k15", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}, 400),
    ("temperature wrong type", {"model": "k15-short", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400),
    ("unknown model", {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, 404),
    ("empty messages", {"model": "k15", "messages": []}, 400),
    ("max_tokens beyond context", {"model": "k15-long", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}, 400),
    ("oversize body", {"model": "k15", "messages": [{"role": "user", "content": "x" * 300_000}]}, 413),
    ("bad reasoning_effort", {"model": "k15", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}, 400),
    ("image to a text-only model", {"model": "k15-short", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}, 400),
    ("remote image host not allowed", {"model": "k15-long", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]}]}, 400),
    ("budget on a model without thinking", {"model": "k15-short", "messages": [{"role": "user", "content": "x"}],
                                            "max_thinking_tokens": 3}, 400),
    ("missing model", {"messages": [{"role": "user", "content": "x"}]}, 400),
    # found by the fuzzer (tests/fuzz_api.py): both were 500s, and the next request on the connection was reset
    ("deeply nested JSON", b'{"model": "k15-short", "messages": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400),
    ("unpaired surrogate escape", b'{"model": "k15-short", "messages": [{"role": "user", "content": "\\ud800"}]}', 400),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "status"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_openai_errors(stack: ServeProcess, name: str, body, status: int) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**stack.headers, "Content-Type": "application/json"}
    for stream in (False, True):
        if stream and isinstance(body, dict):
            content = json.dumps({**body, "stream": True}).encode()
        r = httpx.post(f"{stack.base_url}/chat/completions", content=content, headers=headers, timeout=30)
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["message"] and "Traceback" not in error["message"]
    ok = httpx.post(f"{stack.base_url}/chat/completions", headers=headers, timeout=30,
                    json={"model": "k15-short", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})  # fmt: skip
    assert ok.status_code == 200, "the server keeps serving after a bad request"


def test_api_key_is_required(stack: ServeProcess) -> None:
    body = {"model": "k15", "messages": [{"role": "user", "content": "x"}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{stack.base_url}/models").status_code == 401


def _vllm_metric(stack: ServeProcess, name: str, metric: str) -> float:
    backend = httpx.get(f"http://127.0.0.1:{stack.port}/health").json()["models"][name]
    text = httpx.get(f"{backend['url']}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(metric))


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "non-streamed"])
def test_client_disconnect_cancels_generation_upstream(default_stack: ServeProcess, stream: bool) -> None:
    # 4000 tokens take the default model over a minute here; after a disconnect (a few events into a stream, or a
    # client timeout on a non-streamed request) the generation must stop far short of that (an abort that never
    # happens runs all 4000), and the router records the request as closed by the client (499).
    stack = default_stack
    before = _vllm_metric(stack, "k15-short", "vllm:generation_tokens_total")
    body = {"model": "k15-short", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4000,
            "ignore_eos": True, "stream": stream}  # fmt: skip
    if stream:
        with httpx.stream("POST", f"{stack.base_url}/chat/completions", json=body, timeout=60) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i == 5:
                    break
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{stack.base_url}/chat/completions", json=body, timeout=httpx.Timeout(3, connect=30))
    deadline = time.monotonic() + 120
    while _vllm_metric(stack, "k15-short", "vllm:num_requests_running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _vllm_metric(stack, "k15-short", "vllm:num_requests_running") == 0
    generated = _vllm_metric(stack, "k15-short", "vllm:generation_tokens_total") - before
    assert generated < 1000, f"the abandoned generation ran on ({generated:.0f} of 4000 tokens)"
    text = httpx.get(f"http://127.0.0.1:{stack.port}/metrics").text
    assert 'endpoint="/v1/chat/completions",model="k15-short",status="499"' in text


def test_metrics_count_requests_tokens_and_errors(stack: ServeProcess) -> None:
    text = httpx.get(f"http://127.0.0.1:{stack.port}/metrics").text
    assert 'k15_requests_total{endpoint="/v1/chat/completions",model="k15-long",status="200"}' in text
    assert 'k15_errors_total{model="gpt-9",status="404"}' in text
    assert 'k15_tokens_total{model="k15-long",type="reasoning"}' in text
    assert "k15_request_seconds_bucket" in text
