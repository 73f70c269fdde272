"""Kills that lose nothing, in training: SFT, RL and DPO runs on the tiny model killed with SIGKILL at five moments
each and resumed, against an unbroken run with the same seed.

Each kill hits the trainer's main process only, as the kernel's OOM killer does. Two or three of the five are
aimed, through :mod:`k15.failpoints`, at moments too short to hit from outside — inside a weight sync (RL), a
checkpoint write, a training-state save —; the others come at a random moment of a random step. After each kill
the driver counts the run's processes still alive after 10 s (orphans), kills them, and reruns the same command.
At the end: the final weights against the unbroken run's (max absolute difference), the metrics rows (every step
once, the same values except timings), the kills that happened.

    python -m tests.chaos_train --out /tmp/chaos-train                # all three, ~15 min on 2 cores
    python -m tests.chaos_train --out /tmp/chaos-train --only rl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from k15.failpoints import ENV as FAILPOINT_ENV
from k15.train.runtime.metrics_log import read_metrics
from tests.conftest import wait_session_gone

REPO = Path(__file__).resolve().parent.parent
K15 = [str(Path(sys.executable).parent / "k15")]
ENGINE = {"enforce_eager": True, "gpu_memory_utilization": 0.1, "max_model_len": 512}
# Kills per trainer: failpoint specs (name:n) and "random".
PLANS = {
    "sft": ["random", "state-save:3", "random", "random", "checkpoint-write:1"],
    "rl": ["weight-sync:2", "checkpoint-write:2", "state-save:2", "random", "random"],
    "dpo": ["random", "state-save:2", "random", "random", "checkpoint-write:1"],
}


def timing(key: str) -> bool:
    """Metrics that measure time (they differ between any two runs)."""
    return key.endswith("_s") or key.endswith("per_s") or key.startswith("share_")


def run(cmd: list[str], log: Path, failpoint: str | None = None, kill_at: tuple[int, float] | None = None,
        run_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run ``cmd`` in its own session; SIGKILL its main process at ``kill_at`` = (after this many metrics rows,
    this many seconds later) or let ``failpoint`` do it. Returns what happened."""
    env = {**os.environ, **({FAILPOINT_ENV: failpoint} if failpoint else {})}
    with log.open("a") as out:
        out.write(f"\n=== {' '.join(cmd)} failpoint={failpoint} kill_at={kill_at}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
    killed_by_us, started = False, time.monotonic()
    if kill_at is not None:
        rows, delay = kill_at
        while proc.poll() is None and len(read_metrics(run_dir)) < rows:
            time.sleep(0.05)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed_by_us = True
    rc = proc.wait()
    left = wait_session_gone(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return {"rc": rc, "killed": rc == -signal.SIGKILL, "by": failpoint or ("random" if killed_by_us else None),
            "orphans": len(left), "seconds": round(time.monotonic() - started, 1),
            "rows_at_kill": len(read_metrics(run_dir)) if run_dir else None}  # fmt: skip


def _untimed(value: Any) -> Any:
    return {k: v for k, v in value.items() if not timing(k)} if isinstance(value, dict) else value


def max_abs_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    if x.keys() != y.keys():
        return float("inf")
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def compare(reference: Path, broken: Path) -> dict[str, Any]:
    ref, got = read_metrics(reference), read_metrics(broken)
    steps = [r["step"] for r in got]
    differing = sorted({k for a, b in zip(ref, got, strict=False) for k in a if not timing(k) and a[k] != b.get(k)})
    ref_info = json.loads((reference / "final" / "k15.json").read_text())
    got_info = json.loads((broken / "final" / "k15.json").read_text())
    return {
        "max_abs_weight_diff": max_abs_diff(reference / "final", broken / "final"),
        "steps": steps, "steps_ok": steps == list(range(1, len(ref) + 1)),
        "metrics_keys_compared": sorted(k for k in ref[0] if not timing(k)) if ref else [],
        "metrics_differing": differing,
        "checkpoint_info_differing": sorted(k for k in {*ref_info, *got_info} - {"created"}
                                            if _untimed(ref_info.get(k)) != _untimed(got_info.get(k))),
    }  # fmt: skip


def chaos(name: str, command: list[str], run_dir: Path, reference_cmd: list[str], reference_dir: Path,
          log: Path, rng: random.Random) -> dict[str, Any]:  # fmt: skip
    started = time.monotonic()
    for stale in (run_dir, reference_dir):
        shutil.rmtree(stale, ignore_errors=True)
    unbroken = run(reference_cmd, log)
    assert unbroken["rc"] == 0, f"the unbroken {name} run failed: see {log}"
    total = len(read_metrics(reference_dir))
    step_s = max(0.2, unbroken["seconds"] / max(total, 1) / 2)
    kills: list[dict[str, Any]] = []
    for plan in PLANS[name]:
        done = len(read_metrics(run_dir))
        if plan == "random":
            rows = rng.randint(min(done + 1, total - 1), total - 1)  # inside a step still to run
            outcome = run(command, log, kill_at=(rows, rng.uniform(0, step_s)),
                          run_dir=run_dir)  # fmt: skip
        else:
            outcome = run(command, log, failpoint=plan, run_dir=run_dir)
        outcome["plan"] = plan
        kills.append(outcome)
        print(f"chaos {name}: {plan}: {outcome}", flush=True)
        if outcome["rc"] == 0:
            break  # finished before the kill came
    final = run(command, log, run_dir=run_dir)
    assert final["rc"] == 0, f"the resumed {name} run failed: see {log}"
    result = {"kills": kills, "kills_done": sum(k["killed"] for k in kills),
              "orphans": sum(k["orphans"] for k in kills), "steps_total": total,
              **compare(reference_dir, run_dir), "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
    print(f"chaos {name}: {json.dumps({k: v for k, v in result.items() if k != 'kills'})}", flush=True)
    return result


def prepare(out: Path) -> tuple[Path, Path]:
    from k15.models import prepare_default
    from tests.conftest import build_tiny_model

    tiny, data = out / "tiny", out / "arith"
    if not (tiny / "config.json").is_file():
        build_tiny_model(prepare_default(progress=False), tiny)
    if not (data / "sft.jsonl").is_file():
        subprocess.run([*K15, "data", "demo", str(data), "--train", "40", "--heldout", "10", "--sft", "96"],
                       check=True, capture_output=True)  # fmt: skip
    return tiny, data


def sft_args(model: Path, data: Path, out: Path) -> list[str]:
    sets = {
        "model": model,
        "data": data,
        "output_dir": out,
        "epochs": 2,
        "batch_size": 16,
        "deepspeed.lr": 3e-3,
        "deepspeed.micro_batch_size": 16,
        "max_length": 256,
        "state_every": 1,
        "tensorboard": "false",
    }
    return [*K15, "train", "sft", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]


def rl_config(path: Path, model: Path, data: Path, out: Path) -> list[str]:
    config = {"model": str(model), "data": {"path": str(data)}, "output_dir": str(out), "iterations": 8,
              "prompts_per_iteration": 4, "tau": 0.1, "save_every": 1, "state_every": 1, "tensorboard": False,
              "rollout": {"k": 4, "max_tokens": 64, "segment_tokens": 32, "temperature": 1.0, "engine": ENGINE},
              "deepspeed": {"lr": 1e-3, "micro_batch_size": 8},
              "prompt_sampling": {"curriculum": True, "prioritized": True}}  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return [*K15, "train", "rl", "--config", str(path)]


def dpo_config(path: Path, model: Path, pairs: Path, out: Path) -> list[str]:
    config = {"model": str(model), "data": str(pairs), "output_dir": str(out), "epochs": 2, "batch_size": 8,
              "max_length": 256, "state_every": 1, "tensorboard": False,
              "deepspeed": {"lr": 1e-3, "micro_batch_size": 8}}  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "tests.chaos_train", "--dpo-worker", str(path)]


def dpo_pairs(sft: Path, out: Path) -> Path:
    rows = [json.loads(line) for line in sft.read_text().splitlines()][:48]
    pairs = [{"prompt": r["prompt"], "chosen": r["response"], "rejected": rows[(i + 7) % len(rows)]["response"]}
             for i, r in enumerate(rows)]  # fmt: skip
    out.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/k15-chaos-train"))
    parser.add_argument("--only", choices=sorted(PLANS), action="append")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dpo-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dpo_worker:
        from k15.config import load_config
        from k15.train.long2short.dpo import DPOConfig, DPOTrainer

        print(DPOTrainer(load_config(DPOConfig, args.dpo_worker, [])).train(), flush=True)
        return 0
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng, log = random.Random(args.seed), out / "runs.log"
    tiny, data = prepare(out)
    results: dict[str, Any] = {}
    wanted = args.only or ["sft", "rl", "dpo"]
    if {"sft", "rl"} & set(wanted):
        ref_sft, sft = out / "sft-ref", out / "sft"
        if "sft" in wanted:
            results["sft"] = chaos("sft", sft_args(tiny, data / "sft.jsonl", sft), sft,
                                   sft_args(tiny, data / "sft.jsonl", ref_sft), ref_sft, log, rng)  # fmt: skip
        elif not (ref_sft / "final" / "k15.json").is_file():
            assert run(sft_args(tiny, data / "sft.jsonl", ref_sft), log)["rc"] == 0
        if "rl" in wanted:  # from the SFT model (the random one earns no reward, so RL would not move it)
            start = ref_sft / "final"
            results["rl"] = chaos("rl", rl_config(out / "rl.yaml", start, data / "train.jsonl", out / "rl"),
                                  out / "rl", rl_config(out / "rl-ref.yaml", start, data / "train.jsonl",
                                                        out / "rl-ref"), out / "rl-ref", log, rng)  # fmt: skip
    if "dpo" in wanted:
        pairs = dpo_pairs(data / "sft.jsonl", out / "pairs.jsonl")
        results["dpo"] = chaos("dpo", dpo_config(out / "dpo.yaml", tiny, pairs, out / "dpo"), out / "dpo",
                               dpo_config(out / "dpo-ref.yaml", tiny, pairs, out / "dpo-ref"), out / "dpo-ref", log,
                               rng)  # fmt: skip
    (out / "chaos-train.json").write_text(json.dumps(results, indent=1))
    print(f"chaos train: results in {out / 'chaos-train.json'}")
    held = all(r["max_abs_weight_diff"] == 0 and r["steps_ok"] and not r["metrics_differing"] and r["orphans"] == 0
               and not r["checkpoint_info_differing"] for r in results.values())  # fmt: skip
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
