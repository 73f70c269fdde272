"""Named fault-injection points for the chaos suite (as etcd's and TiKV's failpoints): with
``K15_FAILPOINT=<name>:<n>`` in the environment the process kills itself with SIGKILL the n-th time it passes
``failpoint(<name>)`` (``n`` defaults to 1), so a test can kill a run *inside* a weight sync, a checkpoint write or a
state save — moments too short to hit from outside. Without the variable a failpoint is one dictionary lookup."""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "K15_FAILPOINT"
NAMES = ("weight-sync", "checkpoint-write", "state-save")
_passed: Counter[str] = Counter()


def parse(spec: str) -> tuple[str, int]:
    """``name[:n]`` → (name, n); a name outside :data:`NAMES` or a count below 1 is a ``ValueError``."""
    name, _, count = spec.partition(":")
    if name not in NAMES:
        raise ValueError(f"{ENV}={spec!r}: unknown failpoint {name!r} (known: {', '.join(NAMES)})")
    n = int(count) if count else 1
    if n < 1:
        raise ValueError(f"{ENV}={spec!r}: the count must be at least 1")
    return name, n


def failpoint(name: str) -> None:
    """SIGKILL this process if ``K15_FAILPOINT`` asks for ``name`` and this is the asked-for pass."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, n = parse(spec)
    if wanted != name:
        return
    _passed[name] += 1
    if _passed[name] == n:
        os.kill(os.getpid(), signal.SIGKILL)
