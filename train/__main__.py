"""``python -m train sft|rl …``: the entry point the ``deepspeed`` launcher runs on every rank
(``deepspeed --module train rl --config FILE``)."""

import sys

from k15.cli import main

if __name__ == "__main__":  # vLLM spawns processes that re-import the main module
    sys.exit(main(["train", *sys.argv[1:]]))
