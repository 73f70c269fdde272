"""In-memory weight sync from the trainer into running vLLM engines (the paper's checkpoint engine, §2.6).

The trainer writes its current weights (Hugging Face names) to a safetensors file on tmpfs and every vLLM worker
reloads them in place through :class:`WeightSyncWorker`, which vLLM mixes into its workers
(``worker_extension_cls``). On CPU the engine repacks linear weights at load time, so the worker's own
``reload_weights`` (which repeats that processing) is used rather than ``model.load_weights``; tensors sent
through ``collective_rpc`` would arrive as Python lists, hence the file.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

WORKER_EXTENSION = "k15.train.rl.weight_sync.WeightSyncWorker"


class WeightSyncWorker:
    """Methods added to each vLLM worker; called with ``llm.collective_rpc``."""

    def k15_reload_weights(self, path: str) -> int:
        """Reload the model's weights in place from the safetensors file at ``path``; returns the tensor count."""
        from safetensors.torch import load_file

        tensors = load_file(path)
        self.reload_weights(weights_iterator=iter(tensors.items()))  # type: ignore[attr-defined]
        return len(tensors)


def shared_memory_dir() -> Path:
    """tmpfs when the machine has one (no disk I/O), else the temp directory."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def push_weights(llm: Any, state_dict: Mapping[str, torch.Tensor]) -> float:
    """Send ``state_dict`` (HF parameter names) into the running ``vllm.LLM``; returns the seconds it took."""
    from safetensors.torch import save_file

    start = time.perf_counter()
    fd, name = tempfile.mkstemp(prefix="k15-weights-", suffix=".safetensors", dir=shared_memory_dir())
    os.close(fd)
    try:
        # Tied embeddings share storage; safetensors needs each tensor on its own.
        save_file({k: v.detach().contiguous().clone() for k, v in state_dict.items()}, name)
        counts = llm.collective_rpc("k15_reload_weights", args=(name,))
    finally:
        os.unlink(name)
    if not all(counts):
        raise RuntimeError(f"weight sync reached {counts} tensors per worker")
    return time.perf_counter() - start
