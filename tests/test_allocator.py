"""k15's commands run under tcmalloc when it is installed (k15.allocator): preloaded by one re-execution."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from k15.allocator import SWITCH, tcmalloc_library

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or tcmalloc_library() is None, reason="tcmalloc is not installed"
)
MAPS = "from k15.allocator import preload_tcmalloc; preload_tcmalloc(); print('tcmalloc' in open('/proc/self/maps').read())"


def _env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", SWITCH)}
    return {**env, **changes}


def test_preload_reexecutes_once_with_tcmalloc_mapped_unless_switched_off() -> None:
    run = lambda env: subprocess.run([sys.executable, "-c", MAPS], capture_output=True, text=True, env=env)  # noqa: E731
    assert run(_env()).stdout.strip() == "True"
    assert run(_env(**{SWITCH: "0"})).stdout.strip() == "False"


@pytest.mark.parametrize("command", ["k15", "evalsuite"])
def test_the_commands_load_tcmalloc(command: str) -> None:
    # LD_DEBUG=libs: the dynamic loader names every library it initialises, in the re-executed process too
    executable = Path(sys.executable).parent / command
    result = subprocess.run([str(executable), "--help"], capture_output=True, text=True, env=_env(LD_DEBUG="libs"))
    assert result.returncode == 0
    assert "calling init: " in result.stderr and "tcmalloc" in result.stderr
