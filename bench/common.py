"""What the benchmarks share: the command line every one of them starts from, and printing a report."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(doc: str, out: str | None, model_default: str | None = None) -> argparse.ArgumentParser:
    """``--model`` and ``--out`` (``out``: the default file; None: print only unless given)."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0])
    made.add_argument("--model", default=model_default, help="checkpoint (default: the embedded default)")
    made.add_argument("--out", type=Path, default=Path(out) if out else None, help="also write the report here")
    return made


def emit(report: str, out: Path | None) -> None:
    print(report)
    if out:
        out.write_text(report + "\n")
