"""The main job of ``make demo``: the whole recipe at demo scale on the embedded default, resumable stage by stage.

demo data → warm-up SFT → long-CoT RL → held-out comparison → long2short methods → token-efficiency report (picks
the best method) → ``k15 serve`` of the RL checkpoint (long) and the best long2short one (short) → ``evalsuite run``
on small slices → tables printed → ``k15 ui`` on the same endpoint. Every stage reuses its cached output on a rerun.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from k15.app.pipeline import LongCoTPipelineConfig
from k15.config import Config, merged, partial
from k15.evalsuite.efficiency import LONG, EfficiencyConfig, format_ratio
from k15.serve.config import ServeConfig

PartialEfficiency = partial(EfficiencyConfig)  # the report section: some EfficiencyConfig keys, the demo sets the rest


class FinalEvalConfig(Config):
    """``evalsuite run`` against the served pair: task → first N problems (tasks without data are skipped)."""

    tasks: dict[str, int] = Field(default_factory=lambda: {"aime": 5, "math500": 10, "arith": 30})
    samples: int = Field(1, ge=1)
    max_tokens_long: int = Field(384, gt=0)
    max_tokens_short: int = Field(384, gt=0)


class DemoConfig(LongCoTPipelineConfig):
    name: str = "demo"
    eval_data_dir: str | None = Field(None, description="local copies of AIME / MATH-500 (default: K15_DATA_DIR, "
                                      "else the hub)")  # fmt: skip
    report: PartialEfficiency = Field(default_factory=PartialEfficiency,
                                      description="EfficiencyConfig keys of the long2short report")  # fmt: skip
    final_eval: FinalEvalConfig = FinalEvalConfig()
    serve: ServeConfig = Field(default_factory=lambda: ServeConfig(port=0))
    ui: bool = Field(True, description="start the UI at the end and wait for Ctrl-C")
    ui_port: int = Field(7860, ge=0, le=65535)


class Stages:
    """Times the demo's stages; the table is printed at the end and kept in ``timings.json``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        print(f"\n== k15 demo: {name}", flush=True)
        start = time.monotonic()
        yield
        self.seconds[name] = round(time.monotonic() - start, 1)
        print(f"== k15 demo: {name}: {self.seconds[name]:.0f} s", flush=True)

    def split(self, name: str, parts: dict[str, float]) -> None:
        """Replace stage ``name`` by its timed ``parts`` (the rest of its time kept as ``name``)."""
        rest = self.seconds.pop(name) - sum(parts.values())
        self.seconds = {**{k: round(v, 1) for k, v in parts.items()}, "demo data, setup": round(rest, 1),
                        **self.seconds}  # fmt: skip

    def table(self) -> str:
        rows = [f"| {name} | {seconds / 60:.1f} min |" for name, seconds in self.seconds.items()]
        total = sum(self.seconds.values()) / 60
        return "\n".join(["| stage | wall time |", "|---|--:|", *rows, f"| total | {total:.1f} min |"]) + "\n"


def summary_table(report: dict[str, Any], long: str, short: str) -> str:
    """The demo's closing table: every model of the long2short report on the held-out demo task (the same
    problems and token limit), the served ones named by their endpoint names."""
    task = report["target"]["task"]
    served = {LONG: f"{long} (long-CoT RL)", report["best"]: f"{short} ({report['best']})"}
    lines = [f"| model | held-out accuracy ({task}) | mean tokens | tokens ÷ long |", "|---|--:|--:|--:|"]
    for r in report["rows"]:
        if r["task"] == task:
            lines.append(f"| {served.get(r['model'], r['model'])} | {100 * r['accuracy']:.1f}% | "
                         f"{r['mean_tokens']:.0f} | {format_ratio(r['token_ratio'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does: the UI, then the servers


def run(cfg: DemoConfig) -> int:
    from k15.app import pipeline
    from k15.evalsuite import efficiency
    from k15.evalsuite.runner import EvalConfig
    from k15.evalsuite.runner import run as run_eval
    from k15.evalsuite.tasks import available_tasks
    from k15.serve.stack import ServingStack

    signal.signal(signal.SIGTERM, _interrupt)
    stages = Stages()
    run_dir = cfg.run_dir()
    with stages("long-CoT: demo data, warm-up SFT, RL, held-out comparison"):
        long_cot = pipeline.run(cfg)
    stages.split("long-CoT: demo data, warm-up SFT, RL, held-out comparison", long_cot["seconds"])
    rl_final = run_dir / "rl" / "final"
    with stages(f"long2short: {', '.join(cfg.long2short.methods)}"):
        pipeline.run_long2short(cfg)
    with stages("token-efficiency report"):
        fixed = {"run_dir": str(run_dir), "long": str(rl_final), "data_dir": cfg.eval_data_dir,
                 "demo_data": str(cfg.data_dir()), "target_task": cfg.demo_data.task}  # fmt: skip
        report_cfg = merged(EfficiencyConfig, cfg.report, fixed, "report")
        report = efficiency.run(report_cfg)
    best = Path(report["checkpoints"][report["best"]])
    print(efficiency.table(report))
    serve = cfg.serve.model_copy(update={"long": str(rl_final), "short": str(best)})
    with ServingStack(serve) as stack:
        with stages(f"serve (long: RL, short: {report['best']}) and evalsuite"):
            f = cfg.final_eval
            task = cfg.demo_data.task
            tasks = available_tasks(f.tasks, cfg.eval_data_dir, {task: str(cfg.data_dir())})
            eval_cfg = EvalConfig(
                tasks=list(tasks), endpoint=stack.base_url, api_key=serve.api_key, task_limits=tasks,
                samples=f.samples, data_dir=cfg.eval_data_dir, task_data_dirs={task: str(cfg.data_dir())},
                max_tokens_long=f.max_tokens_long, max_tokens_short=f.max_tokens_short, out=str(run_dir / "evals"),
            )  # fmt: skip
            evals = run_eval(eval_cfg)
        w, r = long_cot["warmup"], long_cot["rl"]
        print(f"\nheld-out demo task: warm-up {w['accuracy']:.1%} → RL {r['accuracy']:.1%} "
              f"(eval noise {long_cot['noise']:.1%}, paired standard error {long_cot['paired']['paired_se']:.1%}); "
              f"long2short best: {report['best']}")  # fmt: skip
        print(f"\n{stages.table()}")
        print(summary_table(report, serve.names.long, serve.names.short))
        (run_dir / "timings.json").write_text(json.dumps(stages.seconds, indent=2) + "\n")
        print(f"k15 demo: results in {run_dir} (report.json, long2short-report/, evals/, timings.json)", flush=True)
        if cfg.ui:
            from k15.ui.launch import UIConfig
            from k15.ui.launch import run as run_ui

            results = [str(evals), str(report_cfg.out_dir() / "evals")]
            ui = UIConfig(endpoint=stack.base_url, api_key=serve.api_key, port=cfg.ui_port, results=results,
                          data_dir=cfg.eval_data_dir)  # fmt: skip
            print("k15 demo: the UI compares both models side by side; Ctrl-C stops it and the servers", flush=True)
            run_ui(ui)
    return 0
