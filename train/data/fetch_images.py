"""``k15 data fetch-images``: make a data set whose rows name http(s) images usable for training, which does not
fetch remote images (:func:`k15.images.resolve_image`).

``fetch_images`` downloads every http(s) image of a row (``images`` or ``image``) whose host is on the allow-list to
``<out>/images/<sha256 of the URL, 16 hex>.<ext>``, checks that Pillow reads it and writes ``<out>/<name>.jsonl``:
the rows with those URLs replaced by ``images/<file>``, local paths rewritten so they still resolve and ``data:`` URLs
as they were. A row with a host not on the list or an image that fails (HTTP error, timeout, too large, not an image)
is reported as ``FILE:LINE: skipped: …`` and left out. A rerun reuses the images already downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

import httpx

from k15.images import check_readable, shown, url_problem
from k15.jsonl import write_rows

MAX_BYTES = 20_000_000
_EXTENSIONS = {"jpeg": "jpg", "tiff": "tif"}


class _Refused(Exception):
    """A download that failed; the message says why."""


def _is_remote(reference: str) -> bool:
    return reference.lower().startswith(("http://", "https://"))


class _Fetcher:
    """Downloads allow-listed images into ``images_dir``, each URL once (a file already there is reused)."""

    def __init__(self, images_dir: Path, allow: Collection[str], max_bytes: int, timeout: float) -> None:
        self.images_dir, self.allow, self.max_bytes = images_dir, allow, max_bytes
        self.downloaded = self.reused = 0
        self.done: dict[str, str | _Refused] = {}
        self.client = httpx.Client(timeout=timeout, follow_redirects=True, event_hooks={"request": [self._check_host]})

    def _check_host(self, request: httpx.Request) -> None:
        """Refuse a redirect to a host not on the allow-list before it is requested."""
        if (why := url_problem(str(request.url), self.allow)) is not None:
            raise _Refused(f"redirected to {shown(str(request.url))}: {why}")

    def close(self) -> None:
        self.client.close()

    def name(self, url: str) -> str:
        """``images/<file>`` of ``url``, downloaded now or before; _Refused says why not."""
        if url not in self.done:
            try:
                self.done[url] = self._fetch(url)
            except _Refused as exc:
                self.done[url] = exc
        result = self.done[url]
        if isinstance(result, _Refused):
            raise result
        return result

    def _fetch(self, url: str) -> str:
        stem = hashlib.sha256(url.encode()).hexdigest()[:16]
        for existing in sorted(self.images_dir.glob(f"{stem}.*")):
            self.reused += 1
            return f"images/{existing.name}"
        data = self._download(url)
        try:
            fmt = check_readable(data, url)
        except ValueError as exc:
            raise _Refused(str(exc)) from None
        ext = _EXTENSIONS.get(fmt, fmt) or "img"
        tmp = self.images_dir / f".{uuid.uuid4().hex}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.images_dir / f"{stem}.{ext}")
        finally:
            tmp.unlink(missing_ok=True)
        self.downloaded += 1
        return f"images/{stem}.{ext}"

    def _download(self, url: str) -> bytes:
        too_large = _Refused(f"image {shown(url)}: larger than {self.max_bytes} bytes (--max-bytes)")
        try:
            with self.client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise _Refused(f"image {shown(url)}: HTTP {response.status_code} {response.reason_phrase}")
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > self.max_bytes:
                    raise too_large
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise too_large
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException:
            raise _Refused(f"image {shown(url)}: timed out") from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            raise _Refused(f"image {shown(url)}: download failed ({type(exc).__name__}: {exc})") from None


def _local(reference: str, source_dir: Path, out: Path) -> str:
    """A local image path of a row in ``source_dir`` as a row in ``out`` names it: relative to ``out`` (absolute if
    given so)."""
    if Path(reference).is_absolute():
        return reference
    path = (source_dir / reference).resolve()
    try:
        return os.path.relpath(path, out.resolve())
    except ValueError:  # another drive
        return str(path)


def _rewrite(row: dict[str, Any], fetcher: _Fetcher, source_dir: Path, out: Path) -> dict[str, Any]:
    """``row`` with its images made to resolve from ``out``; _Refused says why the row is left out."""
    row = dict(row)
    for key in ("images", "image"):
        refs = row.get(key)
        if refs is None:
            continue
        single = isinstance(refs, str)
        if not single and not isinstance(refs, list):
            continue  # training reports it
        new = []
        for ref in [refs] if single else refs:
            if not isinstance(ref, str) or not ref.strip() or ref.startswith("data:"):
                new.append(ref)
            elif _is_remote(ref):
                if (why := url_problem(ref, fetcher.allow)) is not None:
                    raise _Refused(f"image {shown(ref)}: {why.replace('(image_url_allowlist)', '(--allow)')}")
                new.append(fetcher.name(ref))
            elif "://" in ref:
                new.append(ref)  # another scheme: training reports it
            else:
                new.append(_local(ref, source_dir, out))
        row[key] = new[0] if single else new
    return row


def fetch_images(
    source: str | Path,
    out_dir: str | Path,
    allow: Collection[str],
    *,
    max_bytes: int = MAX_BYTES,
    timeout: float = 30.0,
) -> Path:
    """Download the allow-listed http(s) images of the rows of ``source`` into ``out_dir/images`` and write the rows
    that name them as local files to ``out_dir/<source name>``; returns that path."""
    from tqdm import tqdm

    source, out = Path(source), Path(out_dir)
    allow = {host.strip().lower() for host in allow if host.strip()}
    if not allow:
        raise ValueError("--allow: give at least one host to download images from")
    if not source.is_file():
        raise ValueError(f"{source}: not found")
    output = out / source.name
    if output.resolve() == source.resolve():
        raise ValueError(f"{source}: the output would replace the input; give another OUT_DIR")
    lines = source.read_text(encoding="utf-8").splitlines()
    (out / "images").mkdir(parents=True, exist_ok=True)
    fetcher = _Fetcher(out / "images", allow, max_bytes, timeout)
    rows: list[dict[str, Any]] = []
    skipped = 0
    try:
        with tqdm(total=len(lines), unit="row", desc="fetch-images", dynamic_ncols=True) as bar:
            for number, line in enumerate(lines, 1):
                bar.update(1)
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise _Refused("not a JSON object")
                    rows.append(_rewrite(row, fetcher, source.parent, out))
                except json.JSONDecodeError as exc:
                    why = f"not valid JSON ({exc.msg})"
                except _Refused as exc:
                    why = str(exc)
                else:
                    continue
                skipped += 1
                tqdm.write(f"{source}:{number}: skipped: {why}", file=sys.stderr)
    finally:
        fetcher.close()
    write_rows(output, rows)
    print(f"fetch-images: {len(rows)} rows in {output} ({fetcher.downloaded} images downloaded, "
          f"{fetcher.reused} already there; {skipped} rows skipped)")  # fmt: skip
    return output
