"""The README's screenshot: the UI's Compare tab on a demo problem, both modes answered, the long model's thinking
block opened. Point it at a running UI (``make demo`` prints its URL):

    .venv/bin/python scripts/ui_screenshot.py --url http://127.0.0.1:7860 \
        --heldout ~/.cache/k15/runs/demo/data/countdown/heldout.jsonl --index 3 --out docs/ui-compare.png

It drives Debian's headless Chromium with Playwright, as the UI's browser tests do.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as BrowserError
from playwright.sync_api import sync_playwright

from k15.jsonl import read_rows
from k15.prompts import MATH_PROMPT

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"]  # fmt: skip


def heldout_prompt(path: Path, index: int) -> str:
    """Problem ``index`` of a demo task's held-out split, in the prompt the evaluations use."""
    rows = read_rows(path)[0]
    if not 0 <= index < len(rows):
        raise ValueError(f"{path} has {len(rows)} problems; --index {index} is out of range")
    return MATH_PROMPT.format(problem=rows[index]["problem"])


def start_compare(page: Any, prompt: str, max_tokens: int | None = None) -> None:
    """Send ``prompt`` from the Compare tab of ``page``, with the Max tokens slider at ``max_tokens`` if given."""
    if max_tokens is not None:
        box = page.locator("#compare-max-tokens input[type=number]")
        box.fill(str(max_tokens))
        box.press("Enter")
    page.locator("#compare-prompt textarea").fill(prompt)
    page.locator("#compare-go").click()


def wait_compare(page: Any, timeout_s: float) -> None:
    """Wait until both sides of the Compare tab of ``page`` are done."""
    for side in ("left", "right"):
        page.locator(f"#{side}-stats").get_by_text("done").wait_for(timeout=timeout_s * 1000)


def run_compare(page: Any, prompt: str, timeout_s: float, max_tokens: int | None = None) -> None:
    """Send ``prompt`` from the Compare tab of ``page`` and wait until both sides are done."""
    start_compare(page, prompt, max_tokens)
    wait_compare(page, timeout_s)


def open_thinking(page: Any, side: str) -> str:
    """Open the collapsible thinking block of ``side``'s reply (Gradio shows it collapsed once done) and return the
    thinking it shows; "" when that reply has none."""
    group = page.locator(f"#{side}-chat .thought-group").first
    if not page.locator(f"#{side}-chat .thought-group").count():
        return ""
    title = group.locator(".title").first
    if "expanded" not in (title.get_attribute("class") or "").split():
        title.click()
    group.locator(".title.expanded").wait_for(timeout=10_000)
    page.wait_for_timeout(500)  # the opened block renders its markdown
    return group.inner_text().replace(title.inner_text(), "", 1).strip()


def screenshot(
    url: str, prompt: str, out: Path, chromium: str, timeout_s: float = 600, max_tokens: int | None = None
) -> Path:
    """Run ``prompt`` through the Compare tab at ``url``, open the thinking block and save a full-page PNG."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url)
        run_compare(page, prompt, timeout_s, max_tokens)
        open_thinking(page, "left")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the running UI, e.g. http://127.0.0.1:7860")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="the prompt to compare")
    source.add_argument("--heldout", type=Path, help="a demo task's heldout.jsonl (with --index)")
    parser.add_argument("--index", type=int, default=0, help="which held-out problem (default: the first)")
    parser.add_argument("--out", type=Path, default=Path("docs/ui-compare.png"))
    parser.add_argument("--max-tokens", type=int, help="the Compare tab's Max tokens (default: the UI's)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    try:
        prompt = args.prompt or heldout_prompt(args.heldout.expanduser(), args.index)
        print(f"ui_screenshot: {screenshot(args.url, prompt, args.out, args.chromium, max_tokens=args.max_tokens)}")
    except (OSError, ValueError, BrowserError) as exc:
        print(f"ui_screenshot: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
