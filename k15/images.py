"""Image references as serving and training accept them: ``data:image/<type>;base64,…`` URLs, http(s) URLs on
allow-listed hosts (serving only: training does not fetch images) and, in training data, local image files."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_SHOWN_CHARS = 60  # a data URL in a message is cut to this


def url_problem(url: str, allowlist: Collection[str] | None = None) -> str | None:
    """Why ``url`` is not an accepted image URL, or None: it must be a ``data:image/<type>;base64,…`` URL or an
    http(s) URL on a host of ``allowlist`` (None: any host)."""
    try:
        parsed = urlparse(url)
        host = parsed.hostname or ""
    except ValueError:
        return f"image URL {shown(url)} is not a valid URL"
    if parsed.scheme == "data":
        if not url.startswith("data:image/") or ";base64," not in url[:100]:
            return "image data URL must be data:image/<type>;base64,…"
        return None
    if parsed.scheme in ("http", "https"):
        if allowlist is not None and host not in allowlist:
            return f"image host '{host}' is not on the allow-list (image_url_allowlist)"
        return None
    return f"image URL scheme '{parsed.scheme}' is not supported"


def _is_url(reference: str) -> bool:
    """Whether ``reference`` has a URL scheme (``data:``, ``http://``, …) rather than being a file path."""
    return reference.startswith("data:") or "://" in reference


def shown(reference: str) -> str:
    """``reference`` quoted for a message, a long one (a data URL) cut short."""
    return repr(reference if len(reference) <= _SHOWN_CHARS else reference[:_SHOWN_CHARS] + "…")


def resolve_image(reference: str, base_dir: Path) -> str:
    """``reference`` as training data keeps it: a data URL as given, a file path made absolute (a relative one under
    ``base_dir``). ValueError says why it is unusable: a URL :func:`url_problem` refuses, an http(s) URL (training
    does not fetch images), a data URL or a file that is missing or not an image Pillow can read."""
    if _is_url(reference):
        if (why := url_problem(reference)) is not None:
            raise ValueError(why)
        if not reference.startswith("data:"):
            raise ValueError(f"image {shown(reference)}: training does not fetch remote images; `k15 data "
                             "fetch-images` downloads those of allow-listed hosts")  # fmt: skip
        try:
            data = base64.b64decode(reference.split(",", 1)[1], validate=True)
        except binascii.Error:
            raise ValueError(f"image {shown(reference)}: not valid base64") from None
        check_readable(data, reference)
        return reference
    path = (base_dir / reference).resolve()
    if not path.is_file():
        raise ValueError(f"image {shown(reference)}: not found ({path})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"image {shown(reference)}: cannot be read ({exc.strerror or exc})") from None
    check_readable(data, reference)
    return str(path)


def open_image(reference: str) -> Any:
    """The RGB Pillow image of a reference :func:`resolve_image` returned (a file path or a data URL)."""
    from PIL import Image

    source = io.BytesIO(base64.b64decode(reference.split(",", 1)[1])) if reference.startswith("data:") else reference
    with Image.open(source) as image:
        return image.convert("RGB")


def check_readable(data: bytes, reference: str) -> str:
    """The lowercased Pillow format of the image ``data`` ("png", "jpeg", …; "" if Pillow names none). ValueError,
    naming ``reference``, says why Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            image.verify()
    except UnidentifiedImageError:
        raise ValueError(f"image {shown(reference)}: not an image Pillow can read") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, …) for a damaged image
        raise ValueError(f"image {shown(reference)}: damaged ({exc})") from None
    return fmt


def image_fields(images: Sequence[str]) -> dict[str, list[str]]:
    """``{"images": [...]}`` for a data row with images, else nothing (to spread into the row)."""
    return {"images": list(images)} if images else {}
