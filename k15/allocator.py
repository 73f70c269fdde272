"""tcmalloc under k15's commands on Linux, when it is installed (Debian: ``libtcmalloc-minimal4``).

glibc's malloc serves every allocation above 32 MiB with a fresh ``mmap`` and returns it on free, so each training
step's logits (micro-batch × length × vocabulary) are page-faulted and zeroed anew by the kernel: on the 2-core
AVX2 machine the tiny model's SFT spent 53 of its 64 s in the kernel. tcmalloc keeps freed memory for reuse (the
same run: 7.7 s in the kernel, 39 s in all, the same losses; docs/train.md). vLLM's CPU backend asks for it too.
``LD_PRELOAD`` must be set when a process starts, so a command re-executes itself once with it; processes it
starts (DeepSpeed ranks, vLLM servers) inherit it. ``K15_TCMALLOC=0`` turns this off.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

SWITCH = "K15_TCMALLOC"
LIBRARIES = ("tcmalloc_minimal", "tcmalloc")


def tcmalloc_library() -> str | None:
    """The installed tcmalloc's shared-library name (``libtcmalloc_minimal.so.4``), or None."""
    for name in LIBRARIES:
        if found := ctypes.util.find_library(name):
            return found
    return None


def preload_tcmalloc() -> None:
    """Re-execute this process with tcmalloc preloaded, unless it already is, is switched off or is not installed.
    Returns only when nothing is to be done."""
    preload = os.environ.get("LD_PRELOAD", "")
    if not sys.platform.startswith("linux") or os.environ.get(SWITCH) == "0" or "tcmalloc" in preload:
        return
    library = tcmalloc_library()
    if library is None:
        return
    env = {**os.environ, "LD_PRELOAD": f"{library} {preload}".strip()}
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
