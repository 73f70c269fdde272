"""Exact resume: DeepSpeed's state (weights, optimizer) plus the trainer's own (step, sampler, replay buffers,
RNG states), saved together under one tag. A tag counts only once ``k15-latest`` names it (written atomically
after everything else), so a kill at any moment leaves the previous complete state to resume from."""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from k15.failpoints import failpoint
from k15.train.runtime.distributed import barrier, rank

LATEST = "k15-latest"


class WriteError(RuntimeError):
    """A state or checkpoint could not be written (a full disk, most often); the message says what was kept."""


def write_failure(exc: BaseException, where: Path) -> str:
    """What went wrong in a failed write under ``where``, in a few words. PyTorch reports a full disk in several
    ways ("file write failed", "unexpected pos …"), safetensors in its own error type: hence the look at the text
    and at the free space (before the torn files go)."""
    existing = next(p for p in (Path(where), *Path(where).parents) if p.exists())
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)
    if full or shutil.disk_usage(existing).free < 16 * 2**20:
        return "no space left on device"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_tag(state_dir: Path) -> str | None:
    pointer = Path(state_dir) / LATEST
    if not pointer.is_file():
        return None
    tag = pointer.read_text().strip()
    return tag if tag and (Path(state_dir) / tag).is_dir() else None


def saved_zero_stage(state_dir: Path) -> int | None:
    """The ZeRO stage of the newest complete state (DeepSpeed loads a state only into the optimizer that wrote it),
    from its files: 3 with per-rank model shards, 2 with optimizer shards (ZeRO-1 and 2 write the same), else 0;
    None when there is no state."""
    tag = latest_tag(Path(state_dir))
    if tag is None:
        return None
    names = [p.name for p in (Path(state_dir) / tag).iterdir()]
    if any("zero_pp_rank" in n and n.endswith("model_states.pt") for n in names):
        return 3
    return 2 if any(n.endswith("optim_states.pt") for n in names) else 0


def save_state(engine: Any, state_dir: Path, step: int, shared: dict[str, Any], own: dict[str, Any],
               keep: int = 2) -> str:  # fmt: skip
    """Save everything needed to continue after ``step``. ``shared`` is the same on every rank; ``own`` is this
    rank's (e.g. its replay buffer). Every rank calls it."""
    state_dir = Path(state_dir)
    tag = f"step-{step:07d}"
    try:
        (state_dir / tag).mkdir(parents=True, exist_ok=True)
        torch.save({"own": own, "rng": rng_state()}, state_dir / tag / f"k15-rank{rank()}.pt")
        engine.save_checkpoint(str(state_dir), tag=tag, client_state={"k15": shared}, save_latest=False)
    except Exception as exc:  # whatever the writer raises (safetensors has its own error type)
        reason = write_failure(exc, state_dir)
        shutil.rmtree(state_dir / tag, ignore_errors=True)  # a torn state must not hold the space it took
        previous = latest_tag(state_dir)
        kept = f"the last complete state ({previous}) is kept" if previous else "no earlier state exists"
        raise WriteError(f"{state_dir / tag}: could not save the training state ({reason}); {kept}: free space "
                         "and run the same command again to resume") from exc  # fmt: skip
    failpoint("state-save")  # written, not yet the latest
    barrier()
    if rank() == 0:
        tmp = state_dir / (LATEST + ".tmp")
        tmp.write_text(tag)
        os.replace(tmp, state_dir / LATEST)
        tags = sorted(p.name for p in state_dir.glob("step-*") if p.is_dir())
        for old in tags[: max(0, tags.index(tag) + 1 - keep)]:
            shutil.rmtree(state_dir / old, ignore_errors=True)
    barrier()
    return tag


def load_state(engine: Any, state_dir: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Restore the newest complete state into ``engine`` and the RNGs; returns (shared, own), or None if none."""
    tag = latest_tag(Path(state_dir))
    if tag is None:
        return None
    _, client = engine.load_checkpoint(str(state_dir), tag=tag)
    if client is None:
        raise RuntimeError(f"{Path(state_dir) / tag}: DeepSpeed could not load this state")
    mine = Path(state_dir) / tag / f"k15-rank{rank()}.pt"
    if not mine.is_file():
        raise RuntimeError(f"{mine}: missing; the state was saved with a different number of ranks")
    saved = torch.load(mine, weights_only=False)
    set_rng_state(saved["rng"])
    return client["k15"], saved["own"]
