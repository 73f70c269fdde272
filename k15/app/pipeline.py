"""``k15 train long-cot``: the long-CoT recipe as one resumable job — demo data, warm-up SFT, RL, and a held-out
comparison of the warm-up and RL checkpoints (``configs/demo-long-cot.yaml`` on the embedded default) — and the
long2short stage after it (:func:`run_long2short`, part of ``make demo``): the configured methods on the RL checkpoint.

Each stage runs as its own process (``python -m k15 train sft|rl|long2short``, the same entry the DeepSpeed launcher
uses), skips itself when its output exists and resumes itself after a kill.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from k15 import paths
from k15.checkpoint import read_info
from k15.config import Config, merged, partial
from k15.engine import EngineConfig
from k15.evalsuite.report import summarized_models
from k15.evalsuite.runner import EvalConfig, Target, run_in_subprocess, sample_file
from k15.jsonl import read_rows
from k15.train.data import DEMO_TASKS, demo_levels
from k15.train.long2short import METHODS as LONG2SHORT_METHODS
from k15.train.long2short import config_class
from k15.train.long2short.dpo import Long2ShortDPOConfig
from k15.train.long2short.merge import MergeConfig
from k15.train.long2short.rl import Long2ShortRLConfig
from k15.train.long2short.shortest import ShortestConfig
from k15.train.rl.trainer import RLConfig
from k15.train.sft import SFTConfig

Method = Literal[tuple(LONG2SHORT_METHODS)]  # type: ignore[valid-type]  # the registered long2short methods
# Stage sections: some keys of each stage's config (the pipeline sets the rest); wrong keys fail at load.
PartialSFT, PartialRL = partial(SFTConfig), partial(RLConfig)
PartialMerge, PartialShortest = partial(MergeConfig), partial(ShortestConfig)
PartialDPO, PartialLong2ShortRL = partial(Long2ShortDPOConfig), partial(Long2ShortRLConfig)


def _keys(section: Config | None) -> dict[str, Any]:
    """The keys a partial section sets."""
    return section.model_dump(exclude_unset=True) if section is not None else {}


class DemoDataConfig(Config):
    """The generated demo task (:data:`k15.train.data.DEMO_TASKS`); ``dir`` holds ``<task>/{train,heldout,sft}.jsonl``
    and the evalsuite task of the same name scores it."""

    task: str = Field("arith", description="a DEMO_TASKS name: arith (word problems), countdown (search)")
    dir: str | None = Field(None, description="default: <run dir>/data")
    train: int = Field(1000, ge=1)
    heldout: int = Field(200, ge=1)
    sft: int = Field(400, ge=1)
    seed: int = 0
    levels: list[int] | None = Field(None, description="difficulty levels to draw (default: all of the task's)")
    min_budget: int | None = Field(None, description="countdown only: each warm-up trace draws its search budget "
                                   "from this many two-number states up to 12, and the traces that give up are kept "
                                   "(default: all 12, only traces that found the target)")  # fmt: skip

    @field_validator("task")
    @classmethod
    def _known(cls, task: str) -> str:
        if task not in DEMO_TASKS:
            raise ValueError(f"unknown demo task {task!r}; known: {', '.join(DEMO_TASKS)}")
        return task

    @model_validator(mode="after")
    def _levels_known(self) -> DemoDataConfig:
        known = demo_levels(self.task)
        if self.levels is not None and (not self.levels or any(level not in known for level in self.levels)):
            raise ValueError(f"levels of {self.task} are {', '.join(map(str, known))}; got {self.levels}")
        if self.min_budget is not None and self.task != "countdown":
            raise ValueError(f"min_budget is a countdown setting; the demo task here is {self.task}")
        return self

    def splits_options(self) -> dict[str, Any]:
        """The task-specific keyword arguments of its ``make_splits``."""
        return {} if self.min_budget is None else {"min_budget": self.min_budget}


class HeldoutEvalConfig(Config):
    problems: int = Field(100, ge=1)
    samples: int = Field(4, ge=1, description="samples per problem; their spread is the eval's run-to-run noise")
    temperature: float = Field(0.6, ge=0)
    max_tokens: int = Field(384, ge=1)
    thinking_budget: int | None = Field(None, ge=0, description="cut the thinking at this many tokens and force the "
                                        "answer (vLLM's thinking_token_budget); none: no cut")  # fmt: skip
    checkpoints: bool = Field(True, description="also evaluate the RL run's intermediate checkpoints (rl.save_every): "
                              "the held-out curve")  # fmt: skip


class Long2ShortStageConfig(Config):
    """long2short methods run on the RL checkpoint, each into ``<run dir>/long2short/<method>``; the sections hold
    each method's config keys (the long model, prompts, names and directories are set here). ``shortest`` and
    ``dpo`` share one samples file."""

    methods: list[Method] = Field(default_factory=list)
    merge: PartialMerge = Field(default_factory=PartialMerge, description="MergeConfig keys; short default: the base")
    shortest: PartialShortest = Field(default_factory=PartialShortest, description="ShortestConfig keys")
    dpo: PartialDPO = Field(default_factory=PartialDPO, description="Long2ShortDPOConfig keys")
    rl: PartialLong2ShortRL = Field(default_factory=PartialLong2ShortRL, description="Long2ShortRLConfig keys")


class LongCoTPipelineConfig(Config):
    name: str = "demo-long-cot"
    output_dir: str | None = Field(None, description="default: $K15_RUNS/<name>")
    model: str | None = Field(None, description="base model (default: the embedded default)")
    demo_data: DemoDataConfig = DemoDataConfig()
    sft: PartialSFT = Field(default_factory=PartialSFT, description="SFTConfig keys (data, model, output are set)")
    rl: PartialRL = Field(default_factory=PartialRL, description="RLConfig keys (data path, model, output are set)")
    eval: HeldoutEvalConfig = HeldoutEvalConfig()
    long2short: Long2ShortStageConfig = Long2ShortStageConfig()

    def run_dir(self) -> Path:
        return paths.run_dir(self.output_dir, self.name)

    def data_dir(self) -> Path:
        return Path(self.demo_data.dir).expanduser() if self.demo_data.dir else self.run_dir() / "data"

    def task_dir(self) -> Path:
        return self.data_dir() / self.demo_data.task

    def sft_config(self) -> SFTConfig:
        fixed = {"data": str(self.task_dir() / "sft.jsonl"), "output_dir": str(self.run_dir() / "sft"),
                 "name": f"{self.name}-sft", "model": self.model}  # fmt: skip
        return merged(SFTConfig, self.sft, fixed, "sft")

    def rl_config(self) -> RLConfig:
        data = {**_keys(self.rl.data), "path": str(self.task_dir() / "train.jsonl")}
        fixed = {"data": data, "output_dir": str(self.run_dir() / "rl"), "name": f"{self.name}-rl",
                 "model": str(self.run_dir() / "sft" / "final")}  # fmt: skip
        return merged(RLConfig, self.rl, fixed, "rl")

    def long2short_config(self, method: str) -> Config:
        """The config of one long2short method, trained from the RL checkpoint."""
        stage, out = self.long2short, self.run_dir() / "long2short"
        long = str(self.run_dir() / "rl" / "final")
        where = {"output_dir": str(out / method), "name": f"{self.name}-long2short-{method}"}
        section = getattr(stage, method)
        label, cls = f"long2short.{method}", config_class(method)
        if method == "merge":
            short = stage.merge.short or self.model or "default"
            return merged(cls, section, {"long": long, "short": short, **where}, label)
        prompts = {**_keys(section.data), "path": str(self.task_dir() / "train.jsonl")}
        if method == "rl":
            return merged(cls, section, {"model": long, "data": prompts, **where}, label)
        fixed = {"model": long, "data": prompts, "samples": str(out / "samples.jsonl"), **where}
        return merged(cls, section, fixed, label)

    @model_validator(mode="after")
    def _stages_valid(self) -> LongCoTPipelineConfig:
        self.sft_config()  # a bad stage config fails here, before any work
        self.rl_config()
        for method in self.long2short.methods:
            self.long2short_config(method)
        return self


def _run_stage(stage: str, config: Config, run_dir: Path, method: str | None = None) -> Path:
    """Run ``python -m k15 train STAGE [--method M]`` on a written-out config (skipped when its final checkpoint
    exists: for RL, of the last iteration)."""
    final = config.run_dir() / "final"  # type: ignore[attr-defined]
    info = read_info(final) if (final / "k15.json").is_file() else None
    iterations = getattr(config, "iterations", None)
    label = f"{stage} {method}" if method else stage
    if info is not None and (iterations is None or info.iteration == iterations):
        print(f"k15 pipeline: stage {label} done already ({final})", flush=True)
        return final
    config_file = run_dir / f"{stage}{'-' + method if method else ''}.yaml"
    config_file.write_text(yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False))
    print(f"k15 pipeline: stage {label} ({config_file})", flush=True)
    command = [sys.executable, "-m", "k15", "train", stage, *(["--method", method] if method else []), "--config",
               str(config_file)]  # fmt: skip
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"stage {label} failed (exit {result.returncode}); rerun the same command to resume it")
    return final


def evaluate(checkpoints: dict[str, Path], cfg: LongCoTPipelineConfig, out: Path) -> dict[str, dict[str, Any]]:
    """Held-out accuracy on the demo task of each checkpoint (label → path), all through one vLLM engine (weights
    swapped in memory); per-sample-index accuracies show the noise."""
    task, e = cfg.demo_data.task, cfg.eval
    if summarized_models(out) != set(checkpoints):
        eval_cfg = EvalConfig(tasks=[task], backend="vllm", model_paths=[str(p) for p in checkpoints.values()],
                              models=list(checkpoints), data_dir=str(cfg.data_dir()), out=str(out), limit=e.problems,
                              samples=e.samples, temperature=e.temperature, max_tokens_long=e.max_tokens,
                              thinking_budgets=[] if e.thinking_budget is None else [e.thinking_budget],
                              engine=EngineConfig(enforce_eager=True))  # fmt: skip
        run_in_subprocess(eval_cfg, "the held-out evaluation of " + ", ".join(map(str, checkpoints.values())))
    keys = {label: Target(label, "long", thinking_budget=e.thinking_budget).key for label in checkpoints}
    return {label: heldout_stats(read_rows(sample_file(out, task, key))[0], e.samples) for label, key in keys.items()}


def heldout_stats(rows: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """Accuracy, its spread over sample indices, mean tokens and per-problem accuracy of one model's samples."""
    by_sample = [[r["correct"] for r in rows if r["sample"] == s] for s in range(samples)]
    runs = [sum(c) / len(c) for c in by_sample if c]
    by_problem: dict[str, list[bool]] = {}
    for r in rows:
        by_problem.setdefault(r["id"], []).append(r["correct"])
    return {
        "accuracy": sum(runs) / len(runs),
        "per_sample_run": runs,
        "noise_std": statistics.stdev(runs) if len(runs) > 1 else 0.0,
        "mean_tokens": sum(r["completion_tokens"] for r in rows) / len(rows),
        "per_problem": {i: sum(c) / len(c) for i, c in sorted(by_problem.items())},
    }


def paired_difference(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The accuracy gain over the problems both runs answered, its standard error (paired by problem: the spread
    of per-problem differences over √n), and how many problems got better or worse."""
    diffs = [after[i] - before[i] for i in before.keys() & after.keys()]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return {"gain": statistics.fmean(diffs), "paired_se": se, "problems": len(diffs),
            "better": sum(d > 0 for d in diffs), "worse": sum(d < 0 for d in diffs)}  # fmt: skip


def rl_checkpoints(rl_final: Path) -> dict[int, Path]:
    """The checkpoints an RL run saved every ``save_every`` iterations, by iteration."""
    return {read_info(p).iteration: p for p in sorted((rl_final.parent / "checkpoints").glob("iter-*"))}


def plot_curve(run_dir: Path, out: Path, heldout: dict[int, float]) -> Path:
    """The RL curves in the style of the paper's Figures 5–6: accuracy (of the rollouts per iteration, and held-out
    at the checkpoints, iteration 0 being the warm-up model), mean response length and the length reward."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from k15.train.runtime.metrics_log import read_metrics

    rows = read_metrics(run_dir)
    steps = [r["step"] for r in rows]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    accuracy = [r["accuracy"] for r in rows]
    window = max(1, min(8, len(rows) // 4))  # a few prompts per iteration: the running mean shows the trend
    running = [statistics.fmean(accuracy[max(0, i + 1 - window) : i + 1]) for i in range(len(accuracy))]
    top.plot(steps, accuracy, marker=".", alpha=0.35, color="tab:blue", label="rollouts (training prompts)")
    top.plot(steps, running, color="tab:blue", label=f"rollouts, mean of {window} iterations")
    top.plot(list(heldout), list(heldout.values()), marker="o", linewidth=2, color="tab:orange", label="held-out")
    top.set_ylabel("accuracy")
    top.legend()
    middle.plot(steps, [r["response_len_mean"] for r in rows], marker=".", color="tab:green")
    middle.set_ylabel("response tokens")
    bottom.plot(steps, [r["length_reward"] for r in rows], marker=".", color="tab:red")
    bottom.set_ylabel("length reward")
    bottom.set_xlabel("RL iteration")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def run(cfg: LongCoTPipelineConfig) -> dict[str, Any]:
    from k15.train.data import demo_splits

    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    data = cfg.task_dir()
    if not (data / "sft.jsonl").is_file():
        d = cfg.demo_data
        demo_splits(d.task)(data, train=d.train, heldout=d.heldout, sft=d.sft, seed=d.seed, levels=d.levels,
                            **d.splits_options())  # fmt: skip
    seconds, start = {}, time.monotonic()
    sft_final = _run_stage("sft", cfg.sft_config(), run_dir)
    seconds["warm-up SFT"], start = time.monotonic() - start, time.monotonic()
    rl_final = _run_stage("rl", cfg.rl_config(), run_dir)
    seconds["RL"], start = time.monotonic() - start, time.monotonic()
    last = read_info(rl_final).iteration
    saved = rl_checkpoints(rl_final) if cfg.eval.checkpoints else {}
    evaluated = {"warmup": (0, sft_final), **{f"rl-iter-{i}": (i, p) for i, p in saved.items() if i != last},
                 "rl": (last, rl_final)}  # label → (RL iteration, checkpoint)  # fmt: skip
    heldout = evaluate({label: path for label, (_, path) in evaluated.items()}, cfg, run_dir / "eval-heldout")
    seconds["held-out evaluation"] = time.monotonic() - start
    report: dict[str, Any] = {"warmup": heldout["warmup"], "rl": heldout["rl"]}
    report["curve"] = {i: heldout[label]["accuracy"] for label, (i, _) in evaluated.items()}
    report["gain"] = report["rl"]["accuracy"] - report["warmup"]["accuracy"]
    report["noise"] = max(report["rl"]["noise_std"], report["warmup"]["noise_std"])
    report["paired"] = paired_difference(report["warmup"]["per_problem"], report["rl"]["per_problem"])
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    report["seconds"] = seconds  # this run's stage times (a cached stage takes ~0 s)
    plot_curve(rl_final.parent, run_dir / "rl-curve.png", report["curve"])
    w, r = report["warmup"], report["rl"]
    print(f"held-out accuracy: warm-up {w['accuracy']:.1%} ({w['mean_tokens']:.0f} tokens) → RL {r['accuracy']:.1%} "
          f"({r['mean_tokens']:.0f} tokens); gain {report['gain']:+.1%}, eval noise (std over sample runs) "
          f"{report['noise']:.1%}, standard error of the gain paired by problem {report['paired']['paired_se']:.1%} "
          f"({report['paired']['better']} problems better, {report['paired']['worse']} worse); "
          f"report {run_dir / 'report.json'}")  # fmt: skip
    return report


def run_long2short(cfg: LongCoTPipelineConfig) -> dict[str, Path]:
    """Run the configured long2short methods on the RL checkpoint; method → its checkpoint."""
    out = cfg.run_dir() / "long2short"
    out.mkdir(parents=True, exist_ok=True)
    return {m: _run_stage("long2short", cfg.long2short_config(m), out, m) for m in cfg.long2short.methods}
