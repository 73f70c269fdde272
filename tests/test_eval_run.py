"""``evalsuite run`` end to end with the real CLI against real vLLM servers (tiny models), and in-process vLLM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, TEST_KEY, ServeProcess

pytestmark = pytest.mark.vllm
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"benchmark data not found at {SHARED_DATA}")
FAST = ["--max-tokens-long", "48", "--max-tokens-short", "24"]


def evalsuite(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "evalsuite"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})  # fmt: skip


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_data
def test_run_against_an_endpoint_writes_samples_summary_table_and_plot(
    tiny_stack: ServeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = evalsuite("run", "math500", "aime24", "--endpoint", tiny_stack.base_url, "--api-key", TEST_KEY,
                       "--limit", "3", "--samples", "2", "--data-dir", str(SHARED_DATA), "--out", str(out), *FAST)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    pairs = {(r["task"], r["model"]) for r in summary["results"]}
    assert pairs == {(t, m) for t in ("math500", "aime24") for m in ("k15-long", "k15-short")}
    assert summary["run"]["sampling"]["temperature"] == 0.6 and summary["run"]["sampling"]["top_p"] == 0.95
    for row in summary["results"]:
        assert row["n_items"] == 3 and row["samples_per_item"] == 2 and row["errors"] == 0
        assert row["mean_completion_tokens"] > 0 and "pass@2" in row
    long = lines(out / "samples" / "math500__k15-long.jsonl")
    assert len(long) == 6 and {r["sample"] for r in long} == {0, 1}
    first = long[0]
    for key in ("prompt", "reasoning", "answer", "extracted", "correct", "truncated", "latency_s", "completion_tokens"):
        assert key in first
    assert all(r["mode"] == "long" and r["completion_tokens"] <= 48 for r in long)
    assert any(r["reasoning"] for r in long), "the long-CoT model's thinking is recorded"
    short = lines(out / "samples" / "aime24__k15-short.jsonl")
    assert all(r["mode"] == "short" and r["reasoning"] is None and r["completion_tokens"] <= 24 for r in short)
    table = (out / "results.md").read_text()
    assert "| math500 | k15-long |" in table and "| aime24 | k15-short |" in table
    assert (out / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    assert "| math500 | k15-long |" in result.stdout


@needs_data
def test_killed_run_resumes_without_regenerating(tiny_stack: ServeProcess, tmp_path: Path) -> None:
    out = tmp_path / "run"
    exe = Path(sys.executable).parent / "evalsuite"
    args = [str(exe), "run", "math500", "--endpoint", tiny_stack.base_url, "--api-key", TEST_KEY, "--model",
            "k15-long", "--limit", "24", "--data-dir", str(SHARED_DATA), "--out", str(out), "--concurrency", "2",
            "--max-tokens-long", "200"]  # fmt: skip
    samples = out / "samples" / "math500__k15-long.jsonl"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (samples.is_file() and len(samples.read_text().splitlines()) >= 5):
        assert time.monotonic() < deadline and proc.poll() is None, "the run never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with samples.open("a") as f:
        f.write('{"task": "math500", "model": "k15-long", "id": "torn')  # a line cut off by the kill
    before = [json.loads(line) for line in samples.read_text().splitlines()[:-1]]
    assert 5 <= len(before) < 24

    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    after = lines(samples)
    assert len(after) == 24 and len({(r["id"], r["sample"]) for r in after}) == 24
    assert after[: len(before)] == before, "finished samples are kept as they were, not regenerated"
    assert json.loads((out / "summary.json").read_text())["results"][0]["n_items"] == 24


def test_unreachable_endpoint_records_errors_without_losing_the_run(tmp_path: Path) -> None:
    from k15.net import free_port

    data = tmp_path / "data" / "aime24"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text('{"id": "x-1", "problem": "1+1?", "answer": "2"}\n')
    out = tmp_path / "run"
    dead = f"http://127.0.0.1:{free_port()}/v1"
    result = evalsuite("run", "aime24", "--endpoint", dead, "--model", "m", "--data-dir", str(tmp_path / "data"),
                       "--out", str(out), "--set", "retries=1")  # fmt: skip
    # The model list itself is unreachable: a clear error, no traceback, nothing half-written.
    assert result.returncode == 2 and "evalsuite: error:" in result.stderr and "Traceback" not in result.stderr


@needs_data
def test_backend_failures_are_recorded_per_sample_and_retried_on_resume(
    tiny_stack: ServeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    common = ["run", "aime24", "--endpoint", tiny_stack.base_url, "--model", "k15-long", "--limit", "2",
              "--data-dir", str(SHARED_DATA), "--out", str(out), *FAST]  # fmt: skip
    # An over-long request is refused by vLLM (400): recorded as an error for each sample, the run completes.
    failed = evalsuite(*common, "--api-key", TEST_KEY, "--max-tokens-long", "100000")
    assert failed.returncode == 0, failed.stderr[-2000:]
    records = lines(out / "samples" / "aime24__k15-long.jsonl")
    assert len(records) == 2 and all(r["error"] and "max_tokens" in r["error"] for r in records)
    assert json.loads((out / "summary.json").read_text())["results"][0]["errors"] == 2
    fixed = evalsuite(*common, "--api-key", TEST_KEY)
    assert fixed.returncode == 0
    final = {(r["id"], r["sample"]): r for r in lines(out / "samples" / "aime24__k15-long.jsonl")}
    assert len(final) == 2 and all(r["error"] is None for r in final.values())


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    unknown = evalsuite("run", "gsm9k", "--endpoint", "http://127.0.0.1:9/v1")
    assert unknown.returncode == 2 and "unknown task 'gsm9k'" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = evalsuite("run", "math500", "--endpoint", "http://127.0.0.1:9/v1", "--data-dir", str(tmp_path))
    assert missing.returncode == 2 and "math500/test.jsonl: not found" in missing.stderr
    bad_value = evalsuite("run", "math500", "--samples", "0")
    assert bad_value.returncode == 2 and "key 'samples'" in bad_value.stderr


@needs_data
def test_run_without_endpoint_serves_the_checkpoints_itself(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = evalsuite("run", "math500", "--long", str(tiny_model), "--short", str(tiny_model), "--limit", "2",
                       "--data-dir", str(SHARED_DATA), "--out", str(out), "--set", "serve.engine.enforce_eager=true",
                       "--set", "serve.engine.max_model_len=1024", "--set", "serve.engine.gpu_memory_utilization=0.1",
                       *FAST)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    models = {r["model"] for r in json.loads((out / "summary.json").read_text())["results"]}
    assert models == {"k15-long", "k15-short"}


@needs_data
def test_thinking_budget_sweep_cuts_the_thinking_and_plots_accuracy_against_budget(
    tiny_stack: ServeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = evalsuite("run", "math500", "--endpoint", tiny_stack.base_url, "--api-key", TEST_KEY, "--limit", "2",
                       "--data-dir", str(SHARED_DATA), "--out", str(out), "--thinking-budgets", "16,2,4",
                       "--max-tokens-long", "40", "--max-tokens-short", "24")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "summary.json").read_text())["results"]
    swept = {r["model"]: r.get("thinking_budget") for r in results}
    assert {(r["model"], r.get("thinking_budget")) for r in results} == {
        ("k15-long", 2),
        ("k15-long", 4),
        ("k15-long", 16),
        ("k15-short", None),
    }, swept  # the thinking model once per budget; the model without thinking once
    for budget in (2, 4, 16):
        records = lines(out / "samples" / f"math500__k15-long__think-{budget}.jsonl")
        assert len(records) == 2 and all(r["thinking_budget"] == budget and r["error"] is None for r in records)
        assert all(1 <= r["reasoning_tokens"] <= budget + 1 for r in records), "the thinking is cut at the budget"
    by_budget = {r["thinking_budget"]: r["mean_reasoning_tokens"] for r in results if r["model"] == "k15-long"}
    assert by_budget[2] < by_budget[16]
    assert (out / "accuracy_vs_tokens_budget.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "results.md").read_text()
    assert "thinking budget" in table and "| math500 | k15-long | 16 |" in table
    assert "accuracy_vs_tokens_budget.png" in table
    again = evalsuite("report", str(out))
    assert again.returncode == 0 and "accuracy_vs_tokens_budget.png" in again.stdout


@pytest.fixture(scope="module")
def in_process_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One in-process ``evalsuite run`` over two checkpoints of one architecture, the plain tiny model and a long-CoT
    copy (one engine; the second is swapped in), sweeping the thinking budget."""
    from tests.conftest import make_checkpoint

    root = tmp_path_factory.mktemp("in-process")
    long = make_checkpoint(tiny_model, root / "long", "long-cot")
    out = root / "run"
    result = evalsuite("run", "aime25", "--backend", "vllm", "--model-path", str(tiny_model), "--model-path", str(long),
                       "--limit", "3", "--data-dir", str(SHARED_DATA), "--out", str(out), "--thinking-budgets", "3,12",
                       "--set", "engine.enforce_eager=true", "--set", "engine.max_model_len=1024",
                       "--set", "engine.gpu_memory_utilization=0.1", "--max-tokens-long", "32")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@needs_data
def test_in_process_vllm_backend(in_process_run: Path) -> None:
    plain = [p for p in (in_process_run / "samples").glob("aime25__*.jsonl") if "__think-" not in p.name]
    assert len(plain) == 1, plain  # the model without thinking runs once, whatever the budgets
    records = lines(plain[0])
    assert len(records) == 3 and all(0 < r["completion_tokens"] <= 32 for r in records)


@needs_data
def test_in_process_backend_sweeps_the_budget_of_a_thinking_checkpoint(in_process_run: Path) -> None:
    for budget in (3, 12):
        records = lines(in_process_run / "samples" / f"aime25__long__think-{budget}.jsonl")
        assert len(records) == 3 and all(1 <= r["reasoning_tokens"] <= budget + 1 for r in records)


def test_thinking_budgets_must_be_token_counts() -> None:
    for bad in ("32,x", "-4", ","):
        result = evalsuite("run", "math500", "--thinking-budgets", bad)
        assert result.returncode == 2 and "--thinking-budgets" in result.stderr and "Traceback" not in result.stderr


def mathvista_data(root: Path, with_images: bool) -> Path:
    """Two real testmini rows in a local data dir; with rendered PNGs at their image paths when asked."""
    from tests.test_serve_multimodal import render_png

    rows = [json.loads(line) for line in (SHARED_DATA / "mathvista" / "testmini.jsonl").read_text().splitlines()[:2]]
    folder = root / "mathvista"
    (folder / "images").mkdir(parents=True)
    (folder / "testmini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if with_images:
        for row in rows:
            (folder / row["image"]).write_bytes(render_png("green"))
    return root


@needs_data
def test_mathvista_sends_rendered_images_to_a_multimodal_model(vlm_stack: ServeProcess, tmp_path: Path) -> None:
    data = mathvista_data(tmp_path / "data", with_images=True)
    out = tmp_path / "run"
    result = evalsuite("run", "mathvista", "--endpoint", vlm_stack.base_url, "--model", "k15-long",
                       "--data-dir", str(data), "--out", str(out), *FAST)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = lines(out / "samples" / "mathvista__k15-long.jsonl")
    assert len(records) == 2 and all(r["image_sent"] and r["error"] is None for r in records)


@needs_data
def test_mathvista_llm_judge_extracts_through_an_endpoint(tiny_stack: ServeProcess, tmp_path: Path) -> None:
    import httpx

    def judge_requests() -> float:
        text = httpx.get(f"http://127.0.0.1:{tiny_stack.port}/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith('k15_requests_total{endpoint="/v1/chat/completions",model="k15-long"'))  # fmt: skip

    data = mathvista_data(tmp_path / "data", with_images=False)
    before = judge_requests()
    result = evalsuite("run", "mathvista", "--endpoint", tiny_stack.base_url, "--api-key", TEST_KEY, "--model",
                       "k15-short", "--data-dir", str(data), "--out", str(tmp_path / "run"), "--judge-endpoint",
                       tiny_stack.base_url, "--judge-model", "k15-long", *FAST)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = lines(tmp_path / "run" / "samples" / "mathvista__k15-short.jsonl")
    assert all(not r["image_sent"] for r in records), "a text-only model gets the question without the image"
    answered = sum(1 for r in records if r["answer"])
    assert answered >= 1 and judge_requests() - before == answered, "one judge call per answer"
