"""Images through ``k15 serve``: a tiny random Idefics3 VLM (tests/vlm.py) in the real vLLM server."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from tests.conftest import ServeProcess

pytestmark = pytest.mark.vllm


def render_png(color: str) -> bytes:
    image = Image.new("RGB", (64, 64), "white")
    image.paste(Image.new("RGB", (40, 40), color), (12, 12))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture(scope="module")
def image_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A loopback HTTP server with one rendered image: the allow-listed remote image."""
    root = tmp_path_factory.mktemp("images")
    (root / "square.png").write_bytes(render_png("blue"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/square.png"
    server.shutdown()


def chat(stack: ServeProcess, content: list[dict] | str) -> httpx.Response:
    body = {"model": "k15-long", "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    return httpx.post(f"{stack.base_url}/chat/completions", json=body, timeout=60)


def test_data_url_image_reaches_the_vision_tower(vlm_stack: ServeProcess) -> None:
    text_only = chat(vlm_stack, "What color is the square?")
    with_image = chat(vlm_stack, [{"type": "text", "text": "What color is the square?"},
                                  {"type": "image_url", "image_url": {"url": data_url(render_png("red"))}}])  # fmt: skip
    assert text_only.status_code == 200 and with_image.status_code == 200, with_image.text
    extra = with_image.json()["usage"]["prompt_tokens"] - text_only.json()["usage"]["prompt_tokens"]
    assert extra == 7, "the image becomes <fake><global-img> + 4 <image> tokens + <fake>"


def test_allow_listed_remote_image_is_fetched(vlm_stack: ServeProcess, image_host: str) -> None:
    reply = chat(
        vlm_stack, [{"type": "text", "text": "Describe."}, {"type": "image_url", "image_url": {"url": image_host}}]
    )
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    "url",
    ["http://localhost:9/square.png", "https://169.254.169.254/latest/meta-data", "file:///etc/passwd",
     "data:text/plain;base64,aGVsbG8="],
)  # fmt: skip
def test_remote_and_odd_image_urls_are_refused(vlm_stack: ServeProcess, url: str) -> None:
    reply = chat(vlm_stack, [{"type": "image_url", "image_url": {"url": url}}])
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "messages"


def test_undecodable_image_is_a_client_error(vlm_stack: ServeProcess) -> None:
    reply = chat(vlm_stack, [{"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}])
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.json()["error"]["message"]
    assert chat(vlm_stack, "still serving?").status_code == 200
