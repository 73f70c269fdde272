"""``python -m k15 …``: the ``k15`` command, and the entry point the ``deepspeed`` launcher runs on every rank
(``deepspeed --module k15 train rl --config FILE``)."""

import os
import sys

from k15.allocator import preload_tcmalloc
from k15.app.cli import main


def _without_local_rank(argv: list[str]) -> list[str]:
    """Drop the launcher's ``--local_rank=N`` (it also sets LOCAL_RANK in the environment)."""
    kept = []
    for arg in argv:
        if arg.startswith("--local_rank="):
            os.environ.setdefault("LOCAL_RANK", arg.split("=", 1)[1])
        else:
            kept.append(arg)
    return kept


if __name__ == "__main__":  # vLLM spawns processes that re-import the main module
    preload_tcmalloc()
    sys.exit(main(_without_local_rank(sys.argv[1:])))
