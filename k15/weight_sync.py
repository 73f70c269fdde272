"""In-memory weight loading into running vLLM engines (the paper's checkpoint engine, §2.6): the trainer's weights
after each RL iteration, and another checkpoint of the same architecture for evaluation.

The trainer writes its current weights (Hugging Face names) to a safetensors file on tmpfs, a checkpoint has its
own files, and every vLLM worker reloads them in place through :class:`WeightSyncWorker`, which vLLM mixes into its
workers (``worker_extension_cls``). On CPU the engine repacks linear weights at load time, so the worker's own
``reload_weights`` (which repeats that processing) is used rather than ``model.load_weights``; tensors sent
through ``collective_rpc`` would arrive as Python lists, hence the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from k15.failpoints import failpoint

WORKER_EXTENSION = "k15.weight_sync.WeightSyncWorker"
# Hugging Face names of a decoder's output and input embeddings (a checkpoint with tied ones stores only the input)
TIED_EMBEDDINGS = ("lm_head.weight", "model.embed_tokens.weight")


class WeightSyncWorker:
    """Methods added to each vLLM worker; called with ``llm.collective_rpc``."""

    def k15_reload_weights(self, *paths: str, tied: tuple[str, str] | None = None) -> int:
        """Reload the model's weights in place from the safetensors files at ``paths`` (one checkpoint's shards);
        ``tied`` = (output, input) names an output embedding the files leave out because it is the input one.
        Returns the tensor count."""
        from safetensors.torch import load_file

        tensors = {name: tensor for path in paths for name, tensor in load_file(path).items()}
        if tied and tied[0] not in tensors and tied[1] in tensors:
            # vLLM on CPU keeps its own packed copy of the output layer: it must be reloaded too.
            tensors[tied[0]] = tensors[tied[1]]
        self.reload_weights(weights_iterator=iter(tensors.items()))  # type: ignore[attr-defined]
        return len(tensors)

    def k15_die_with(self, owner: int) -> bool:
        """Kill this worker's engine processes when ``owner`` (the process that started the engine) is gone.
        vLLM's engine core and its worker outlive an owner killed with SIGKILL (the OOM killer's way), holding
        their memory — or a GPU — until killed by hand. Returns whether the owner is an ancestor (then watched)."""
        import signal
        import threading

        import psutil

        ancestors = psutil.Process().parents()
        pids = [p.pid for p in ancestors]
        if owner not in pids:
            return False
        owner_process, engine = ancestors[pids.index(owner)], ancestors[: pids.index(owner)]  # engine: in between

        def watch() -> None:
            while owner_process.is_running():  # also false if the pid was reused
                time.sleep(1.0)
            for process in engine:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, name="k15-die-with-owner", daemon=True).start()
        return True


@contextlib.contextmanager
def kept_random_state() -> Iterator[None]:
    """Restore the process's torch, Python and NumPy random states on exit (an engine in process seeds them)."""
    import random

    import numpy as np

    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])


def start_engine(model_path: Path, **kwargs: Any) -> Any:
    """A ``vllm.LLM`` of ``model_path`` with the weight-sync extension. With ``distributed_executor_backend:
    uni`` (:meth:`k15.engine.EngineConfig.runs_in_process`) the engine runs in this process, whose random state
    it leaves as it was; otherwise its spawned processes die with this one."""
    import vllm.envs
    from vllm import LLM

    in_process = kwargs.get("distributed_executor_backend") == "uni"
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
    with kept_random_state():
        llm = LLM(model=str(model_path), worker_extension_cls=WORKER_EXTENSION, **kwargs)
    vllm.envs.disable_envs_cache()  # an engine core in process freezes vLLM's view of the environment
    if not in_process:
        llm.collective_rpc("k15_die_with", args=(os.getpid(),))
    return llm


def shared_memory_dir() -> Path:
    """tmpfs when the machine has one (no disk I/O), else the temp directory."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _reload(llm: Any, files: tuple[str, ...], tied: tuple[str, str] | None, what: str) -> None:
    """Every worker reloads ``files`` in place; then the prefix cache and the encoder cache go (their prompt KV and
    image embeddings came from the old weights; left as they are, a vision model's next request with an image seen
    before fails with "Encoder cache miss")."""
    counts = llm.collective_rpc("k15_reload_weights", args=files, kwargs={"tied": tied})
    if not all(counts):
        raise RuntimeError(f"{what} reached {counts} tensors per worker")
    llm.reset_prefix_cache()
    llm.llm_engine.reset_encoder_cache()


def push_weights(llm: Any, state_dict: Mapping[str, torch.Tensor]) -> float:
    """Send ``state_dict`` (HF parameter names) into the running ``vllm.LLM``; returns the seconds it took."""
    from safetensors.torch import save_file

    start = time.perf_counter()
    fd, name = tempfile.mkstemp(prefix="k15-weights-", suffix=".safetensors", dir=shared_memory_dir())
    os.close(fd)
    try:
        # Tied embeddings share storage; safetensors needs each tensor on its own.
        save_file({k: v.detach().contiguous().clone() for k, v in state_dict.items()}, name)
        failpoint("weight-sync")  # written, not yet loaded
        _reload(llm, (name,), None, "weight sync")
    finally:
        os.unlink(name)
    return time.perf_counter() - start


def load_checkpoint(llm: Any, checkpoint: Path) -> float:
    """Load the weights of the Hugging Face ``checkpoint`` (same architecture as the engine's model) into the
    running ``vllm.LLM`` in place; returns the seconds it took."""
    start = time.perf_counter()
    files = tuple(sorted(str(f) for f in Path(checkpoint).glob("*.safetensors")))
    if not files:
        raise ValueError(f"{checkpoint}: no safetensors weights to load")
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    _reload(llm, files, TIED_EMBEDDINGS if config.get("tie_word_embeddings") else None, f"loading {checkpoint}")
    return time.perf_counter() - start
