"""A disk that fills up during a training-state write: a clear error, the last good state kept and resumable.

The disk is a real tmpfs of a fixed size (mounting needs root, as in CI; elsewhere the test is skipped)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from k15.train.runtime.metrics_log import read_metrics
from tests.conftest import run_k15

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root")


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.fixture
def small_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    # One training state of the tiny model is 92–101 MB (weights + Adam moments; bf16 / fp32): room for one, not two.
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(disk)], capture_output=True,
                             text=True)  # fmt: skip
    if mounted.returncode != 0:  # root without the capability to mount (some containers)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_during_a_state_write_fails_clearly_and_the_last_state_resumes(
    tiny_model: Path, arith: Path, small_disk: Path, tmp_path: Path
) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text("".join((arith / "sft.jsonl").read_text().splitlines(keepends=True)[:32]))
    out = small_disk / "run"
    args = ["train", "sft", "--set", f"model={tiny_model}", "--set", f"data={data}", "--set", f"output_dir={out}",
            "--set", "epochs=1", "--set", "batch_size=16", "--set", "deepspeed.micro_batch_size=16",
            "--set", "max_length=128", "--set", "state_every=1", "--set", "tensorboard=false"]  # fmt: skip
    # The sizes below are ZeRO-2 states' (one rank defaults to ZeRO-0); the runs that resume leave the stage unset
    # and must take it from the saved state, as a run started before that default changed does.
    failed = run_k15(*args, "--set", "deepspeed.zero_stage=2", timeout=600)
    assert failed.returncode == 2, failed.stderr[-3000:]
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("k15: error: ") and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert "step-0000002" in error and "no space left on device" in error, error
    assert "the last complete state (step-0000001) is kept" in error, error
    state = out / "state"
    assert (state / "k15-latest").read_text().strip() == "step-0000001"
    assert not (state / "step-0000002").exists(), "the torn state is removed, freeing its space"
    assert not (out / "final").exists()

    # Room for the second state but not for the exported checkpoint beside it: sized from what the first state
    # takes (its size depends on the training precision: ~101 MB in fp32, ~92 MB in bf16), leaving half the
    # weights' bytes free after the second state.
    kept = state / "step-0000001"
    weights = max(f.stat().st_size for f in kept.rglob("*model_states.pt"))
    room = _bytes(small_disk) + _bytes(kept) + weights // 2
    subprocess.run(["mount", "-o", f"remount,size={room // 2**20}m", str(small_disk)], check=True)
    resumed = run_k15(*args, timeout=600)
    assert resumed.returncode == 2 and "resuming" in resumed.stdout and "after step 1" in resumed.stdout
    error = resumed.stderr.strip().splitlines()[-1]
    assert error == f"k15: error: {out / 'final'}: could not write the checkpoint (no space left on device); nothing was written", error  # fmt: skip
    assert (state / "k15-latest").read_text().strip() == "step-0000002"
    assert not (out / "final").exists() and not (out / "final.tmp").exists()

    subprocess.run(["mount", "-o", "remount,size=600m", str(small_disk)], check=True)  # space freed
    done = run_k15(*args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after step 2" in done.stdout
    info = json.loads((out / "final" / "k15.json").read_text())
    assert info["iteration"] == 2 and info["metrics"]["loss"] == read_metrics(out)[-1]["loss"]
