"""``k15 ui`` in a real browser (Debian's headless Chromium driven by Playwright) against real tiny models."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.ui_screenshot import CHROMIUM_FLAGS, open_thinking, run_compare, start_compare, wait_compare
from tests.conftest import REPO, SHARED_DATA, TEST_KEY, ServeProcess

pytestmark = pytest.mark.vllm
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts" / "ui"
TEST_MAX_TOKENS = 256  # the tiny random models never stop early: keep each stream short on a slow 2-core machine


@pytest.fixture(scope="module")
def results_dir(tiny_stack: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    out = tmp_path_factory.mktemp("eval") / "tiny-run"
    exe = Path(sys.executable).parent / "evalsuite"
    subprocess.run([str(exe), "run", "aime24", "--endpoint", tiny_stack.base_url, "--api-key", TEST_KEY, "--limit", "3",
                    "--data-dir", str(SHARED_DATA), "--out", str(out), "--max-tokens-long", "32",
                    "--max-tokens-short", "32"], check=True, capture_output=True, timeout=300)  # fmt: skip
    return out


@contextlib.contextmanager
def running_ui(endpoint: str, *args: str) -> Iterator[str]:
    """A real ``k15 ui`` process against ``endpoint``; its URL once the page answers."""
    from k15.net import free_port

    port = free_port()
    exe = Path(sys.executable).parent / "k15"
    proc = subprocess.Popen([str(exe), "ui", "--endpoint", endpoint, "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"k15 ui did not come up:\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def ui_url(tiny_stack: ServeProcess, results_dir: Path) -> Iterator[str]:
    with running_ui(tiny_stack.base_url, "--api-key", TEST_KEY, "--results", str(results_dir),
                    "--data-dir", str(SHARED_DATA)) as url:  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


def streamed_tokens(stats: str) -> int:
    """Reasoning plus answer tokens from a Compare side's stats line."""
    return sum(int(n) for n in re.findall(r"(?:reasoning|answer) (\d+) tok", stats))


def test_compare_streams_both_modes_and_shows_the_thinking(browser, ui_url: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.goto(ui_url)
    run_compare(
        page, "What is 2 + 3? Put your final answer within \\boxed{}.", timeout_s=120, max_tokens=TEST_MAX_TOKENS
    )
    left = page.locator("#left-chat")
    thought = left.get_by_text("Thought for")
    thought.wait_for(timeout=30_000)
    assert " tokens" in thought.inner_text()
    assert open_thinking(page, "left")  # the opened block shows the thinking, not only its title
    assert "k15-long" in page.locator("#left-stats").inner_text()
    assert "k15-short" in page.locator("#right-stats").inner_text()
    assert "reasoning 0 tok" in page.locator("#right-stats").inner_text()  # the short model does not think
    assert streamed_tokens(page.locator("#left-stats").inner_text()) <= TEST_MAX_TOKENS  # the slider reached the API
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
    page.close()


def test_screenshot_script_saves_the_compare_tab(ui_url: str, tmp_path: Path) -> None:
    """scripts/ui_screenshot.py, which takes the README's screenshot from the demo's models, on the tiny models."""
    rows = tmp_path / "heldout.jsonl"
    rows.write_text('{"id": "c-0", "problem": "Make 10 from the numbers 2, 3 and 4."}\n')
    out = tmp_path / "compare.png"
    script = [sys.executable, str(REPO / "scripts" / "ui_screenshot.py"), "--url", ui_url, "--out", str(out),
              "--max-tokens", str(TEST_MAX_TOKENS)]  # fmt: skip
    result = subprocess.run([*script, "--heldout", str(rows)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    bad = subprocess.run([*script, "--heldout", str(rows), "--index", "5"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "has 1 problems; --index 5 is out of range" in bad.stderr, bad.stderr


def test_two_browser_sessions_generate_independently(browser, ui_url: str) -> None:
    pages = [browser.new_page() for _ in range(2)]
    for page in pages:
        page.goto(ui_url)
    prompts = ["Session one: 1 + 1?", "Session two: 2 + 2?"]
    for page, prompt in zip(pages, prompts, strict=True):
        start_compare(page, prompt, max_tokens=TEST_MAX_TOKENS)
    for page, prompt in zip(pages, prompts, strict=True):
        wait_compare(page, timeout_s=120)
        chat = page.locator("#left-chat").inner_text()
        assert prompt in chat and not any(other in chat for other in prompts if other != prompt)
    for page in pages:
        page.close()


def test_results_tab_shows_table_plot_and_samples(browser, ui_url: str) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(ui_url)
    page.get_by_role("tab", name="Results").click()
    page.locator("#results-load").click()
    expect(page.locator("#results-table")).to_contain_text("aime24", timeout=60_000)
    expect(page.locator("#results-table")).to_contain_text("k15-long")
    page.locator("#results-plot img").wait_for(timeout=30_000)
    expect(page.locator("#samples-table")).to_contain_text("2024-I-1")
    page.locator("#samples-table").get_by_text("2024-I-1", exact=True).filter(visible=True).first.click()
    expect(page.locator("#sample-details")).to_contain_text("Problem", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "results.png"), full_page=True)
    page.close()


def test_chat_tab_multi_turn(browser, ui_url: str) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(ui_url)
    page.get_by_role("tab", name="Chat").click()
    limit = page.locator("#chat-max-tokens input[type=number]")
    limit.fill(str(TEST_MAX_TOKENS))
    limit.press("Enter")
    for message in ("First message", "Second message"):
        page.locator("#chat-input textarea").fill(message)
        page.locator("#chat-send").click()
        expect(page.locator("#chat")).to_contain_text(message, timeout=60_000)
        expect(page.locator("#chat-stats")).to_contain_text("done", timeout=120_000)
    text = page.locator("#chat").inner_text()
    assert text.index("First message") < text.index("Second message")
    assert text.count("Thought for") == 2  # each long-mode reply shows its own thinking block
    page.close()


def test_stop_cancels_the_generation_upstream(default_stack: ServeProcess) -> None:
    """What the Stop button does (Gradio closes the event's generator): the streams close and vLLM aborts."""
    from k15.ui.app import App
    from k15.ui.streaming import Turn

    app = App(default_stack.base_url, None, [], None)
    health = httpx.get(f"http://127.0.0.1:{default_stack.port}/health").json()["models"]["k15-short"]["url"]

    def metric(name: str) -> float:
        text = httpx.get(f"{health}/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    before = metric("vllm:generation_tokens_total")
    turn = Turn("k15-short")
    params = {"max_tokens": 4000, "temperature": 0, "extra_body": {"ignore_eos": True}}
    updates = app.run_turns([turn], [[{"role": "user", "content": "x"}]], [params])
    while not turn.answer:
        next(updates)
    updates.close()  # Stop
    deadline = time.monotonic() + 120
    while metric("vllm:num_requests_running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric("vllm:num_requests_running") == 0
    generated = metric("vllm:generation_tokens_total") - before
    assert generated < 1000, f"Stop must abort the generation ({generated:.0f} of 4000 tokens ran)"


def test_the_page_says_when_both_modes_are_one_checkpoint(browser, default_stack: ServeProcess, ui_url: str) -> None:
    with running_ui(default_stack.base_url) as url:  # k15 serve without trained models: one checkpoint, two names
        page = browser.new_page()
        page.goto(url)
        note = page.locator("#same-checkpoint")
        note.wait_for(timeout=30_000)
        assert "k15-long and k15-short are the same checkpoint" in note.inner_text()
        page.close()
    page = browser.new_page()  # a long-CoT and another checkpoint: no note
    page.goto(ui_url)
    page.locator("#compare-go").wait_for(timeout=30_000)
    assert page.locator("#same-checkpoint").count() == 0
    page.close()


def test_unreachable_server_is_a_message_not_a_traceback() -> None:
    from k15.net import free_port
    from k15.ui.app import App

    app = App(f"http://127.0.0.1:{free_port()}/v1", None, [], None)
    *_, last = app.compare("1+1?", None, "k15-long", "k15-short", 0.6, 64, 0, "medium")
    left_messages = last[0]
    assert "cannot reach the model server" in str(left_messages[-1].content)
    assert threading.active_count() < 50


def test_chat_history_text_is_recovered_from_gradio_parts() -> None:
    from k15.ui.app import message_text

    assert message_text("plain") == "plain"
    assert message_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\nb"
