"""``k15 report long2short RUN_DIR``: the token-efficiency report of §2.4 (the paper's Figure 7).

The long-CoT model and every long2short checkpoint found under ``RUN_DIR`` are evaluated on held-out prompts of the
demo task and a slice of MATH-500: accuracy, mean completion tokens, and both as ratios of the long model's, as a
table (``report.md``), ``report.json`` and an accuracy-against-tokens plot (``figure7.png``). Each checkpoint is
evaluated by ``evalsuite run --backend vllm`` in its own process into ``OUT/evals/<label>``, so a rerun reuses
every finished sample.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from k15.checkpoint import METADATA_FILE, Kind, is_checkpoint, read_info
from k15.config import Config
from k15.engine import EngineConfig
from k15.evalsuite.report import load_summary, plot_accuracy_vs_tokens, summarized_models
from k15.evalsuite.runner import EvalConfig, run_in_subprocess
from k15.evalsuite.tasks import available_tasks

LONG = "long-cot"


class EfficiencyConfig(Config):
    run_dir: str = Field(description="searched for long2short checkpoints (intermediate ones under checkpoints/ "
                         "only with `intermediate`)")  # fmt: skip
    intermediate: bool = Field(
        False,
        description="also evaluate the checkpoints a long2short run saved before its end (checkpoints/iter-N, every "
        "save_every), labelled METHOD@N: the picker can then stop long2short RL where its accuracy-against-tokens "
        "curve crosses the target",
    )
    long: str | None = Field(None, description="the long-CoT model (default: the one the long2short ones come from)")
    tasks: dict[str, int] = Field(default_factory=lambda: {"arith": 100, "math500": 30},
                                  description="task → number of problems (the first N)")  # fmt: skip
    demo_data: str | None = Field(
        None,
        description="the data directory of the demo task (target_task) "
        "(default: RUN_DIR/data, where `k15 train long-cot` writes it)",
    )
    data_dir: str | None = Field(None, description="the other tasks' local copies (default: K15_DATA_DIR, else hub)")
    samples: int = Field(2, ge=1, description="samples per problem")
    temperature: float = Field(0.6, ge=0)
    max_tokens: int = Field(384, gt=0, description="the same budget for every model")
    target_task: str = "arith"
    target_accuracy: float = Field(0.95, gt=0, description="keep at least this share of the long model's accuracy")
    target_tokens: float = Field(0.5, gt=0, description="with at most this share of its mean tokens")
    engine: EngineConfig = Field(default_factory=lambda: EngineConfig(enforce_eager=True, max_model_len=2048))
    out: str | None = Field(None, description="default: RUN_DIR/long2short-report")

    def out_dir(self) -> Path:
        return Path(self.out).expanduser() if self.out else Path(self.run_dir).expanduser() / "long2short-report"

    def task_data_dirs(self) -> dict[str, str]:
        demo = Path(self.demo_data).expanduser() if self.demo_data else Path(self.run_dir).expanduser() / "data"
        return {self.target_task: str(demo)}


@dataclass(frozen=True)
class Model:
    label: str
    path: Path
    method: str


def find_long2short(run_dir: Path, intermediate: bool = False) -> list[Model]:
    """Every finished long2short checkpoint under ``run_dir``, labelled by its method (by its path where two
    share one); with ``intermediate`` also those saved during a run (under ``checkpoints/``), labelled METHOD@N."""
    found = []
    for meta in sorted(run_dir.rglob(METADATA_FILE)):
        path = meta.parent
        saved_during = "checkpoints" in path.relative_to(run_dir).parts
        info = read_info(path) if is_checkpoint(path) else None
        if info is None or info.kind != Kind.long2short or (saved_during and not intermediate):
            continue
        method = info.method or "long2short"
        label = f"{method}@{info.iteration}" if saved_during and info.iteration is not None else method
        found.append((label, method, path))
    labels = [label for label, _, _ in found]
    return [Model(label if labels.count(label) == 1 else str(path.relative_to(run_dir)), path, method)
            for label, method, path in found]  # fmt: skip


def long_model(cfg: EfficiencyConfig, short: list[Model]) -> Path:
    """``cfg.long``, else the single model the long2short checkpoints were made from."""
    if cfg.long:
        return Path(cfg.long).expanduser()
    bases = {read_info(m.path).base_model for m in short}  # type: ignore[union-attr]
    bases.discard(None)
    if len(bases) != 1:
        listed = ", ".join(sorted(map(str, bases))) or "none recorded"
        raise ValueError(f"cannot tell the long-CoT model (long2short bases: {listed}); pass --long PATH")
    return Path(bases.pop())  # type: ignore[arg-type]


def evaluate(cfg: EfficiencyConfig, models: list[Model], tasks: dict[str, int]) -> list[dict[str, Any]]:
    """Evaluate ``models`` on ``tasks`` (task → problems) into ``OUT/evals`` through one vLLM engine (each
    checkpoint's weights swapped into it); their evalsuite results, one per task and model. A rerun resumes the
    samples; samples made with other settings (``settings.json``) are discarded."""
    out = cfg.out_dir() / "evals"
    settings = {
        "tasks": list(tasks), "samples": cfg.samples, "task_limits": tasks, "data_dir": cfg.data_dir,
        "task_data_dirs": cfg.task_data_dirs(), "temperature": cfg.temperature, "max_tokens_long": cfg.max_tokens,
        "max_tokens_short": cfg.max_tokens,
    }  # fmt: skip
    checkpoints = {"model_paths": [str(m.path) for m in models], "models": [m.label for m in models]}
    recorded = out / "settings.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != settings:
        shutil.rmtree(out)
    if summarized_models(out) != set(checkpoints["models"]):
        out.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps(settings, indent=2) + "\n")
        print(f"k15 report long2short: evaluating {', '.join(checkpoints['models'])} (one engine)", flush=True)
        eval_cfg = EvalConfig.model_validate({**settings, **checkpoints, "backend": "vllm", "out": str(out),
                                              "engine": cfg.engine})  # fmt: skip
        run_in_subprocess(eval_cfg, "the long2short checkpoints")
    method = {m.label: m.method for m in models}
    return [{**r, "method": method[r["model"]]} for r in load_summary(out)["results"] if r["model"] in method]


def compare(cfg: EfficiencyConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios against the long model per task, the target check and the best long2short method.

    Best: among the methods meeting the target on ``target_task``, the most accurate; if none meets it, the one with
    the fewest tokens among those keeping the accuracy share, else the most accurate."""
    long = {r["task"]: r for r in results if r["model"] == LONG}
    rows = []
    for r in results:
        base = long[r["task"]]
        accuracy, tokens = r["pass@1"], r["mean_completion_tokens"]
        acc_ratio = accuracy / base["pass@1"] if base["pass@1"] else None
        token_ratio = tokens / base["mean_completion_tokens"] if base["mean_completion_tokens"] else None
        meets = (r["model"] != LONG and acc_ratio is not None and token_ratio is not None
                 and acc_ratio >= cfg.target_accuracy and token_ratio <= cfg.target_tokens)  # fmt: skip
        rows.append({"model": r["model"], "method": r["method"], "task": r["task"], "accuracy": accuracy,
                     "mean_tokens": tokens, "accuracy_ratio": acc_ratio, "token_ratio": token_ratio,
                     "meets_target": meets})  # fmt: skip
    short = [r for r in rows if r["task"] == cfg.target_task and r["model"] != LONG]
    meeting = [r for r in short if r["meets_target"]]
    keeping = [r for r in short if (r["accuracy_ratio"] or 0) >= cfg.target_accuracy]
    if meeting:
        best = max(meeting, key=lambda r: (r["accuracy"], -r["mean_tokens"]))
    elif keeping:
        best = min(keeping, key=lambda r: r["mean_tokens"])
    else:
        best = max(short, key=lambda r: r["accuracy"], default=None)
    target = {"task": cfg.target_task, "accuracy_ratio": cfg.target_accuracy, "token_ratio": cfg.target_tokens}
    return {"rows": rows, "best": best["model"] if best else None, "target": target,
            "met_by": [r["model"] for r in meeting]}  # fmt: skip


def format_ratio(value: float | None) -> str:
    """A ratio to the long model as printed in the tables (``–`` when there is none)."""
    return "–" if value is None else f"{value:.2f}"


def table(report: dict[str, Any]) -> str:
    t = report["target"]
    target = f"target (≥ {t['accuracy_ratio']} accuracy, ≤ {t['token_ratio']} tokens on {t['task']})"
    lines = [f"| model | task | accuracy | mean tokens | accuracy ÷ long | tokens ÷ long | {target} |",
             "|---|---|--:|--:|--:|--:|---|"]  # fmt: skip
    for r in report["rows"]:
        verdict = "–" if r["model"] == LONG or r["task"] != t["task"] else ("met" if r["meets_target"] else "missed")
        ratios = f"{format_ratio(r['accuracy_ratio'])} | {format_ratio(r['token_ratio'])}"
        lines.append(f"| {r['model']} | {r['task']} | {100 * r['accuracy']:.1f}% | {r['mean_tokens']:.0f} | "
                     f"{ratios} | {verdict} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def run(cfg: EfficiencyConfig) -> dict[str, Any]:
    """Evaluate, compare, write ``report.json``, ``report.md`` and ``figure7.png``; returns the report."""
    run_dir = Path(cfg.run_dir).expanduser()
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a directory")
    short = find_long2short(run_dir, cfg.intermediate)
    if not short:
        raise ValueError(f"{run_dir}: no long2short checkpoint here (a directory with k15.json of kind long2short)")
    long = long_model(cfg, short)
    if not is_checkpoint(long):
        raise ValueError(f"{long}: not a checkpoint (no config.json and safetensors)")
    tasks = available_tasks(cfg.tasks, cfg.data_dir, cfg.task_data_dirs())
    if cfg.target_task not in tasks:
        raise ValueError(f"the target task {cfg.target_task!r} is not among the evaluated tasks {sorted(tasks)}")
    results = evaluate(cfg, [Model(LONG, long, "long-cot"), *short], tasks)
    report = {"long": str(long), "checkpoints": {m.label: str(m.path) for m in short}, **compare(cfg, results)}
    out = cfg.out_dir()
    plot_results = [{"task": r["task"], "model": r["model"], "pass@1": r["accuracy"],
                     "mean_completion_tokens": r["mean_tokens"]} for r in report["rows"]]  # fmt: skip
    plot = plot_accuracy_vs_tokens(plot_results, out / "figure7.png", title="long2short: accuracy against tokens")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    best = report["best"]
    verdict = (f"best: {best} (meets the target)" if best in report["met_by"]
               else f"best: {best} (no method meets the target)")  # fmt: skip
    (out / "report.md").write_text(f"# long2short token efficiency\n\nlong-CoT model: `{long}`\n\n{table(report)}\n"
                                   f"{verdict}\n\n![accuracy against tokens]({plot.name})\n")  # fmt: skip
    return report
