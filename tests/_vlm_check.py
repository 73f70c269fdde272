"""Standalone check: build the tiny VLM, serve it with the real vLLM OpenAI server, ask about an image."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vlm import build_tiny_vlm  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / ".k15" / "models" / "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data_url() -> str:
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    image.paste((220, 30, 30), (16, 16, 48, 48))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        model = build_tiny_vlm(SOURCE, Path(tmp) / "tiny-vlm")
        print(f"built in {time.monotonic() - t0:.1f} s: {sorted(p.name for p in model.iterdir())}")
        port = free_port()
        log_path = Path(tmp) / "vllm.log"
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", "tiny-vlm", "--host", "127.0.0.1", "--port", str(port),
               "--enforce-eager", "--max-model-len", "1024", "--gpu-memory-utilization", "0.3",
               "--dtype", "bfloat16"]  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        start = time.monotonic()
        try:
            while True:
                if proc.poll() is not None:
                    print("server exited early:\n" + log_path.read_text(errors="replace")[-8000:])
                    return 1
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - start > 900:
                    print("timeout:\n" + log_path.read_text(errors="replace")[-8000:])
                    return 1
                time.sleep(0.5)
            print(f"engine start: {time.monotonic() - start:.1f} s")
            body = {
                "model": "tiny-vlm",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "What color is the square?"},
                    {"type": "image_url", "image_url": {"url": data_url()}},
                ]}],
            }  # fmt: skip
            t1 = time.monotonic()
            resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=300)
            print(f"status {resp.status_code} in {time.monotonic() - t1:.1f} s")
            print(json.dumps(resp.json(), indent=2))
            ok = resp.status_code == 200
            text_only = {"model": "tiny-vlm", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
            resp2 = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=text_only, timeout=300)
            print(f"text-only: status {resp2.status_code}: {resp2.json()['choices'][0]['message']['content']!r}")
            ok = ok and resp2.status_code == 200
            if not ok or os.environ.get("SHOW_LOG"):
                print(log_path.read_text(errors="replace")[-8000:])
            return 0 if ok else 1
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    raise SystemExit(main())
