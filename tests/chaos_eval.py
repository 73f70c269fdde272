"""Kills that lose nothing, in evaluation: ``evalsuite run`` killed with SIGKILL at three random moments and
resumed, against an unbroken run with the same seeds, both on one ``k15 serve`` (the tiny model as a long-CoT
checkpoint).

Figures: the final per-sample file against the unbroken run's (same rows, compared by item and sample, timings
left out), and the requests the server answered (its ``k15_requests`` counter): a resumed run asks only for the
samples it has not written, so the broken run's answered requests exceed its samples only by the ones in flight
at each kill.

    python -m tests.chaos_eval                      # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.chaos_load import router_statuses
from tests.conftest import SHARED_DATA, ServeProcess, engine_flags, make_checkpoint

EVALSUITE = str(Path(sys.executable).parent / "evalsuite")
TIMING = ("latency_s",)


def answered(server: ServeProcess) -> int:
    """Chat requests the router answered with 200 so far."""
    return router_statuses(server).get("200", 0)


def rows(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill
        out[(row["id"], row["sample"])] = {k: v for k, v in row.items() if k not in TIMING}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/k15-chaos-eval"))
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from k15.models import prepare_default
    from tests.conftest import build_tiny_model

    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    tiny = build_tiny_model(prepare_default(progress=False), out / "tiny")
    long = make_checkpoint(tiny, out / "long", "long-cot")
    server = ServeProcess(["--long", str(long), "--short", str(tiny), *engine_flags(max_model_len=1024)])
    rng = random.Random(args.seed)
    try:

        def command(run: Path) -> list[str]:
            return [EVALSUITE, "run", "math500", "--endpoint", server.base_url, "--model", "k15-long", "--limit",
                    str(args.limit), "--samples", "2", "--temperature", "1.0", "--data-dir", str(SHARED_DATA),
                    "--out", str(run), "--concurrency", "4", "--max-tokens-long", "200"]  # fmt: skip

        samples = "samples/math500__k15-long.jsonl"
        before = answered(server)
        subprocess.run(command(out / "unbroken"), check=True, capture_output=True, timeout=900)
        unbroken_requests = answered(server) - before
        before = answered(server)
        kills = []
        for _ in range(args.kills):
            file = out / "broken" / samples
            done = len(rows(file)) if file.is_file() else 0
            target = rng.randint(done + 1, done + max(2, (2 * args.limit - done) // 2))
            proc = subprocess.Popen(command(out / "broken"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while proc.poll() is None and not (file.is_file() and len(rows(file)) >= target):
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append({"samples_written_at_kill": len(rows(file)), "answered_so_far": answered(server) - before})
            print(f"chaos eval: kill {len(kills)}: {kills[-1]}", flush=True)
        subprocess.run(command(out / "broken"), check=True, capture_output=True, timeout=900)
        broken_requests = answered(server) - before
    finally:
        server.stop()
    reference, got = rows(out / "unbroken" / samples), rows(out / "broken" / samples)
    differing = sorted(k for k in reference if reference[k] != got.get(k))
    figures = {
        "samples": len(reference), "kills": kills, "rows_equal": reference == got,
        "rows_differing": [list(k) for k in differing[:10]], "rows_differing_count": len(differing),
        "unbroken_requests": unbroken_requests, "broken_requests": broken_requests,
        "extra_requests": broken_requests - len(got),
    }  # fmt: skip
    print(json.dumps(figures, indent=1))
    (out / "chaos-eval.json").write_text(json.dumps(figures, indent=1))
    return 0 if figures["rows_equal"] and unbroken_requests == len(reference) else 1


if __name__ == "__main__":
    sys.exit(main())
