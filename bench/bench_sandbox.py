"""The code grader's throughput: HumanEval's 164 canonical solutions (each with its tests) run in the sandbox,
one at a time and then with one worker per core, in the same process.

    python bench/bench_sandbox.py --out docs/bench-sandbox.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from k15.evalsuite.tasks import get_task
from k15.grading.code import build_program
from k15.sandbox import Sandbox, SandboxLimits


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the machine type."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.machine()


def throughput(programs: list[str], workers: int) -> tuple[float, int]:
    """(programs per second, how many passed) with ``workers`` programs at once."""
    sandbox = Sandbox(SandboxLimits(workers=workers))
    try:
        started = time.monotonic()
        results = sandbox.run_many(programs)
        return len(programs) / (time.monotonic() - started), sum(r.passed for r in results)
    finally:
        sandbox.close()


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--out", type=Path)
    opts = args.parse_args()
    items = get_task("humaneval").items()
    programs = [build_program(item.record["prompt"] + item.record["answer"], item.record) for item in items]
    cores = os.cpu_count() or 1
    one, passed_one = throughput(programs, 1)
    many, passed_many = throughput(programs, cores)
    report = "\n".join([
        f"# Sandbox throughput ({cpu_name()}, {cores} cores)", "",
        "| workers | programs/s | passed |", "|---|---|---|",
        f"| 1 | {one:.1f} | {passed_one}/{len(programs)} |",
        f"| {cores} | {many:.1f} | {passed_many}/{len(programs)} |", "",
        f"{cores} workers ÷ 1: {many / one:.2f}×",
    ])  # fmt: skip
    print(report)
    if opts.out:
        opts.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
