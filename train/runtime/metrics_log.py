"""Per-iteration metrics: a JSONL file, TensorBoard (and wandb when installed and asked for), and a progress line
with an ETA. Only the writing rank logs."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from k15.jsonl import append_rows, read_rows, write_rows

METRICS_FILE = "metrics.jsonl"


def rounded(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics as logged (and as a checkpoint records them): six decimals."""
    return {k: round(float(v), 6) for k, v in metrics.items()}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The logged rows (a line torn by a kill is dropped)."""
    return read_rows(Path(run_dir) / METRICS_FILE)[0]


class MetricsLogger:
    def __init__(self, run_dir: Path, total: int, start: int, enabled: bool, tensorboard: bool = True,
                 wandb: bool = False, name: str = "k15") -> None:  # fmt: skip
        self.enabled, self.total, self.start = enabled, total, start
        self.path = Path(run_dir) / METRICS_FILE
        self.began = time.monotonic()
        self.tb = self.wandb = None
        if not enabled:
            return
        # On resume, drop rows of steps that will run again (and any torn line), so every step is logged once.
        kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= start]
        write_rows(self.path, kept)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start + 1)
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                print("k15 train: wandb is not installed; logging to JSONL and TensorBoard only", file=sys.stderr)
            else:
                self.wandb = wandb_module.init(project="k15", name=name, dir=str(run_dir), resume="allow")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **rounded(metrics)}
        append_rows(self.path, [row])
        if self.tb is not None:
            for key, value in metrics.items():
                self.tb.add_scalar(key, value, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        done = step - self.start
        eta = (time.monotonic() - self.began) / max(done, 1) * (self.total - step)
        shown = " ".join(f"{k}={metrics[k]:.4g}" for k in ("reward", "accuracy", "loss", "response_len_mean")
                         if k in metrics)  # fmt: skip
        print(f"[{step}/{self.total}] {shown} | ETA {eta / 60:.1f} min", flush=True)

    def last(self) -> dict[str, float]:
        """The metrics of the last logged step (a run resumed after its last step exports with them)."""
        rows = read_metrics(self.path.parent) if self.enabled else []
        return {k: v for k, v in rows[-1].items() if k != "step"} if rows else {}

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
