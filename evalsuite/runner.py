"""``evalsuite run``: generate, grade and summarise, resumably.

Samples are appended to ``OUT/samples/<task>__<model>.jsonl`` as they finish (one JSON line each, flushed), so a
killed run continues where it stopped: finished samples are kept, errored ones are retried, a torn last line is
dropped. ``summary.json``, ``results.md`` and the plot are rewritten atomically at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field
from tqdm import tqdm

from k15 import __version__
from k15.client import Completion, EndpointGenerator
from k15.config import Config
from k15.engine import EngineConfig
from k15.evalsuite.generate import VLLMGenerator
from k15.evalsuite.metrics import summarize
from k15.evalsuite.report import markdown_table, render, write_summary
from k15.evalsuite.tasks import Item, Task, get_task, task_data_dir
from k15.grading import CODE_GRADERS
from k15.grading.judge import CoTJudge, JudgeConfig, VerifierMode, verify
from k15.jsonl import write_text_atomic
from k15.sandbox import Sandbox, SandboxLimits
from k15.serve.config import ServeConfig


class EvalConfig(Config):
    tasks: list[str] = Field(min_length=1)
    endpoint: str | None = Field(None, description="OpenAI-compatible base URL; None: start k15 serve")
    models: list[str] = Field(default_factory=list, description="model names at the endpoint; empty: every mode")
    api_key: str | None = None
    backend: Literal["endpoint", "vllm"] = "endpoint"
    model_paths: list[str] = Field(default_factory=list, description="--backend vllm: the checkpoints (default: the "
                                   "embedded default), one engine for those of one architecture, weights swapped in "
                                   "memory")  # fmt: skip
    samples: int = Field(1, ge=1, description="samples per problem; pass@1 is their mean")
    limit: int | None = Field(None, ge=1, description="first N problems of each task")
    task_limits: dict[str, int] = Field(default_factory=dict, description="per task: first N problems (over limit)")
    out: str | None = None
    data_dir: str | None = None
    task_data_dirs: dict[str, str] = Field(default_factory=dict, description="per task: its data directory (over "
                                           "data_dir), e.g. a run's generated demo task")  # fmt: skip
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens_long: int = Field(4096, gt=0)
    max_tokens_short: int = Field(1024, gt=0)
    thinking_budgets: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="sweep: each thinking model once per budget (thinking tokens; the answer "
        "is forced after the cut); models without thinking run once"
    )  # fmt: skip
    seed: int = 0
    concurrency: int = Field(32, ge=1, description="requests in flight to an endpoint; with --backend vllm every "
                             "request is queued at once and this many samples are graded at once")  # fmt: skip
    retries: int = Field(4, ge=0)
    request_timeout_s: float = Field(1800, gt=0)
    send_images: bool | None = Field(None, description="None: when the server says the model is multimodal")
    judge_endpoint: str | None = Field(None, description="OpenAI-compatible URL of a judge LLM: MathVista's answer "
                                       "extractor, and the chain-of-thought verifier of math_verifier")  # fmt: skip
    judge_model: str | None = None
    judge_max_tokens: int = Field(1024, ge=16, description="the chain-of-thought judge's tokens per verdict")
    math_verifier: VerifierMode = Field("rules", description="math answers: rules, judge, or rules_then_judge "
                                        "(the judge where the rules found no answer or called it wrong)")  # fmt: skip
    sandbox: SandboxLimits = Field(default_factory=SandboxLimits, description="limits of code tasks' programs")
    serve: ServeConfig = Field(
        default_factory=lambda: ServeConfig(port=0, split_cpus=False),
        description="the stack started without --endpoint; it evaluates one model at a time, so every engine may use "
        "every core",
    )
    engine: EngineConfig = Field(default_factory=EngineConfig)


@dataclass(frozen=True)
class Target:
    """A model to evaluate: its name, mode (long or short, which picks max_tokens), whether it sees images, whether
    it thinks in a block a budget can cut, and the thinking budget it runs under (None: none)."""

    name: str
    mode: str
    multimodal: bool = False
    thinks: bool = True
    thinking_budget: int | None = None

    @property
    def key(self) -> str:
        """The model and its budget, as sample files and timings are named."""
        return self.name if self.thinking_budget is None else f"{self.name}__think-{self.thinking_budget}"

    @property
    def label(self) -> str:
        return self.name if self.thinking_budget is None else f"{self.name} (thinking ≤ {self.thinking_budget})"


def with_budgets(targets: list[Target], budgets: list[int]) -> list[Target]:
    """One target per thinking budget for each thinking target; the others once, as they are."""
    swept: list[Target] = []
    for target in targets:
        swept += [replace(target, thinking_budget=b) for b in budgets] if budgets and target.thinks else [target]
    return swept


def sample_file(out: Path, task: str, model: str) -> Path:
    return out / "samples" / f"{task}__{re.sub(r'[^A-Za-z0-9._-]', '_', model)}.jsonl"


def load_samples(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Finished samples by (id, sample); the last line of a key wins; a torn last line is cut off."""
    if not path.is_file():
        return {}
    records: dict[tuple[str, int], dict[str, Any]] = {}
    good_bytes = 0
    with path.open("rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                break
            records[(record["id"], record["sample"])] = record
            good_bytes += len(raw)
    if good_bytes < path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return records


def make_record(
    task: Task, target: Target, item: Item, sample: int, completion: Completion | None, error: str | None,
    latency: float, image_sent: bool, grading: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One sample's JSON line; ``grading``: options of :func:`k15.grading.judge.verify` (judge, sandbox, ...)."""
    record: dict[str, Any] = {
        "task": task.name, "model": target.name, "mode": target.mode, "id": item.id, "sample": sample,
        "thinking_budget": target.thinking_budget, "prompt": item.text, "gold": str(item.record.get("answer")),
        "image_sent": image_sent,
        "latency_s": round(latency, 3), "error": error,
    }  # fmt: skip
    if completion is None:
        return record | {"reasoning": None, "answer": None, "finish_reason": None, "completion_tokens": 0,
                         "reasoning_tokens": 0, "extracted": None, "correct": False, "truncated": False}  # fmt: skip
    text, opened = completion.graded_text()
    problem = str(item.record.get("problem", item.text))
    graded = verify(task.grader, text, item.record, problem=problem, think_opened_by_prompt=opened,
                    finish_reason=completion.finish_reason, **(grading or {}))  # fmt: skip
    return record | {
        "reasoning": completion.reasoning, "answer": completion.content, "finish_reason": completion.finish_reason,
        "completion_tokens": completion.completion_tokens, "reasoning_tokens": completion.reasoning_tokens,
        "extracted": graded.extracted, "correct": graded.correct, "truncated": graded.truncated,
        "verifier": graded.verifier, "detail": graded.detail,
    }  # fmt: skip


class Runner:
    def __init__(self, cfg: EvalConfig, out: Path) -> None:
        self.cfg = cfg
        self.out = out
        self.state_path = out / "state.json"
        self.state: dict[str, float] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.judge = self.cot_judge = None
        if cfg.judge_endpoint and not cfg.judge_model:
            raise ValueError("judge_endpoint needs judge_model (the model name at that endpoint)")
        if cfg.math_verifier != "rules" and not cfg.judge_endpoint:
            raise ValueError(f"math_verifier {cfg.math_verifier!r} needs judge_endpoint and judge_model")
        if cfg.judge_endpoint:
            from k15.grading.mathvista import JudgeExtractor

            self.judge = JudgeExtractor(cfg.judge_endpoint, cfg.judge_model, cfg.api_key or "EMPTY")
            if cfg.math_verifier != "rules":
                self.cot_judge = CoTJudge(JudgeConfig(endpoint=cfg.judge_endpoint, model=cfg.judge_model,
                                                      api_key=cfg.api_key or "EMPTY",
                                                      max_tokens=cfg.judge_max_tokens))  # fmt: skip
        self._sandbox: Sandbox | None = None

    def grading(self, task: Task) -> dict[str, Any]:
        """How ``task``'s samples are graded: MathVista's extractor, the math verifier mode, the code sandbox."""
        if task.grader == "mathvista":
            return {"extractor": self.judge} if self.judge else {}
        if task.grader in CODE_GRADERS:
            if self._sandbox is None:
                self._sandbox = Sandbox(self.cfg.sandbox)
            return {"sandbox": self._sandbox}
        return {"mode": self.cfg.math_verifier, "judge": self.cot_judge}

    @staticmethod
    def blocking(grading: dict[str, Any]) -> bool:
        """Whether grading waits on something else (a judge's HTTP reply, a sandboxed program): run it in threads."""
        return any(grading.get(key) is not None for key in ("extractor", "sandbox", "judge"))

    def sampling(self, target: Target, sample: int) -> dict[str, Any]:
        max_tokens = self.cfg.max_tokens_long if target.mode == "long" else self.cfg.max_tokens_short
        params = {"temperature": self.cfg.temperature, "top_p": self.cfg.top_p, "max_tokens": max_tokens,
                  "seed": self.cfg.seed + sample}  # fmt: skip
        if target.thinking_budget is not None:
            params["thinking_token_budget"] = target.thinking_budget
        return params

    def pending(self, path: Path, items: list[Item]) -> tuple[list[tuple[Item, int]], int]:
        done = {key for key, r in load_samples(path).items() if r.get("error") is None}
        todo = [(item, s) for item in items for s in range(self.cfg.samples) if (item.id, s) not in done]
        return todo, len(items) * self.cfg.samples - len(todo)

    def save_wall(self, key: str, seconds: float) -> None:
        self.state[key] = self.state.get(key, 0.0) + seconds
        write_text_atomic(self.state_path, json.dumps(self.state))

    async def run_endpoint(self, generator: EndpointGenerator, task: Task, items: list[Item], target: Target) -> None:
        path = sample_file(self.out, task.name, target.key)
        todo, done = self.pending(path, items)
        send_image = self.cfg.send_images if self.cfg.send_images is not None else target.multimodal
        gate = asyncio.Semaphore(self.cfg.concurrency)
        started = time.monotonic()
        with path.open("a") as sink, tqdm(total=len(todo) + done, initial=done, unit="sample",
                                          desc=f"{task.name} · {target.label}", dynamic_ncols=True) as bar:  # fmt: skip

            async def one(item: Item, sample: int) -> None:
                async with gate:
                    begin = time.monotonic()
                    completion, error = None, None
                    try:
                        completion = await generator.complete(
                            target.name, item.messages(send_image), self.sampling(target, sample)
                        )
                    except Exception as exc:  # recorded per sample, retried on resume
                        error = f"{type(exc).__name__}: {exc}"[:500]
                    grading = self.grading(task)
                    args = (task, target, item, sample, completion, error, time.monotonic() - begin,
                            send_image and item.image is not None, grading)  # fmt: skip
                    # A judge (an HTTP call) or the sandbox (a program run) blocks: in a thread, so the other
                    # samples go on meanwhile. Rule grading stays on this thread (math-verify's timeouts need the
                    # main thread's signals).
                    blocking = self.blocking(grading)
                    record = await asyncio.to_thread(make_record, *args) if blocking else make_record(*args)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                bar.update()

            await asyncio.gather(*(one(item, sample) for item, sample in todo))
        self.save_wall(f"{task.name}__{target.key}", time.monotonic() - started)

    def run_vllm(self, generator: VLLMGenerator, task: Task, items: list[Item], target: Target) -> None:
        """Every pending sample queued on the in-process engine at once; each is graded and written as it finishes
        (a sample's ``latency_s`` is the wall time since the one before it finished)."""
        path = sample_file(self.out, task.name, target.key)
        todo, done = self.pending(path, items)
        grading = self.grading(task)
        blocking = self.blocking(grading)
        requests = [(item.messages(False), self.sampling(target, s)) for item, s in todo]
        started = last = time.monotonic()
        with path.open("a") as sink, tqdm(total=len(todo) + done, initial=done, unit="sample",
                                          desc=f"{task.name} · {target.label}", dynamic_ncols=True) as bar, \
                ThreadPoolExecutor(self.cfg.concurrency) as pool:  # fmt: skip
            grading_now: list[Future[dict[str, Any]]] = []  # a judge or sandboxed programs: several at once

            def write(record: dict[str, Any]) -> None:
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                bar.update()

            for i, completion in generator.stream(requests):
                item, sample = todo[i]
                now = time.monotonic()
                job = (task, target, item, sample, completion, None, now - last, False, grading)
                last = now
                if blocking:
                    grading_now.append(pool.submit(make_record, *job))
                    for future in [f for f in grading_now if f.done()]:
                        grading_now.remove(future)
                        write(future.result())
                else:
                    write(make_record(*job))
            for future in grading_now:
                write(future.result())
        self.save_wall(f"{task.name}__{target.key}", time.monotonic() - started)

    def summarise(self, tasks: list[Task], targets: list[Target], run_info: dict[str, Any]) -> list[dict[str, Any]]:
        results = []
        for task in tasks:
            for target in targets:
                records = list(load_samples(sample_file(self.out, task.name, target.key)).values())
                wall = self.state.get(f"{task.name}__{target.key}")
                budget = {} if target.thinking_budget is None else {"thinking_budget": target.thinking_budget}
                results.append({"task": task.name, "model": target.name, **budget, **summarize(records, wall)})
        write_summary(self.out, run_info, results)
        render(self.out)
        return results


def targets_from_server(models: list[dict[str, Any]], wanted: list[str]) -> list[Target]:
    """Which served models to evaluate (every mode unless named) and their modes, from ``/v1/models``.

    k15 serve lists each model's ``mode`` and whether it ``thinks``; other servers' models count as long-CoT
    (reasoning) models that think."""
    by_id = {m["id"]: m for m in models}
    names = wanted or [m["id"] for m in models if m.get("kind") != "auto"]
    unknown = [n for n in names if n not in by_id]
    if unknown:
        raise ValueError(f"model(s) {', '.join(unknown)} not served at the endpoint; served: {', '.join(by_id)}")
    targets = []
    for name in names:
        entry = by_id[name]
        mode = entry.get("mode", "long")
        targets.append(Target(name, mode, bool(entry.get("multimodal")), bool(entry.get("thinks", mode == "long"))))
    return targets


def run(cfg: EvalConfig) -> Path:
    """Evaluate; returns the output directory (with summary.json, results.md and the plot)."""
    tasks = [get_task(name) for name in cfg.tasks]
    out = Path(cfg.out or f"evals/{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
    (out / "samples").mkdir(parents=True, exist_ok=True)
    items = {task.name: task.items(task_data_dir(task.name, cfg.data_dir, cfg.task_data_dirs),
                                   cfg.task_limits.get(task.name, cfg.limit)) for task in tasks}  # fmt: skip
    runner = Runner(cfg, out)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if cfg.backend == "vllm":
        targets, where = run_in_process(cfg, runner, tasks, items)
    elif cfg.endpoint:
        targets, where = asyncio.run(run_against(cfg, cfg.endpoint, runner, tasks, items)), cfg.endpoint
    else:
        from k15.serve.stack import ServingStack

        with ServingStack(cfg.serve) as stack:
            names = {"long": cfg.serve.names.long, "short": cfg.serve.names.short}
            wanted = cfg.models or [names["long"], names["short"]]
            api_cfg = cfg.model_copy(update={"api_key": cfg.api_key or cfg.serve.api_key, "models": wanted})
            targets = asyncio.run(run_against(api_cfg, stack.base_url, runner, tasks, items))
            where = (
                f"k15 serve (long: {stack.backends[names['long']].path}, short: {stack.backends[names['short']].path})"
            )
    run_info = {
        "tasks": cfg.tasks, "models": list(dict.fromkeys(f"{t.name} ({t.mode})" for t in targets)),
        "samples": cfg.samples, **({"thinking_budgets": cfg.thinking_budgets} if cfg.thinking_budgets else {}),
        "sampling": {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens_long": cfg.max_tokens_long,
                     "max_tokens_short": cfg.max_tokens_short, "seed": cfg.seed},
        "wall_s": round(sum(runner.state.values()), 1), "limit": cfg.limit, "task_limits": cfg.task_limits,
        "endpoint": where,
        "data": {t.name: str(task_data_dir(t.name, cfg.data_dir, cfg.task_data_dirs) or "Hugging Face hub")
                 for t in tasks}, "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"), "k15": __version__,
    }  # fmt: skip
    results = runner.summarise(tasks, targets, run_info)
    print(markdown_table(results))
    return out


async def run_against(
    cfg: EvalConfig, base_url: str, runner: Runner, tasks: list[Task], items: dict[str, list[Item]]
) -> list[Target]:
    generator = EndpointGenerator(base_url, cfg.api_key or os.environ.get("OPENAI_API_KEY"), cfg.request_timeout_s,
                                  cfg.retries)  # fmt: skip
    try:
        try:
            served = await generator.served_models()
        except Exception as exc:
            raise RuntimeError(f"cannot list the models at {base_url}: {type(exc).__name__}: {exc}") from None
        targets = with_budgets(targets_from_server(served, cfg.models), cfg.thinking_budgets)
        for task in tasks:
            for target in targets:
                await runner.run_endpoint(generator, task, items[task.name], target)
    finally:
        await generator.close()
    return targets


def run_in_process(cfg: EvalConfig, runner: Runner, tasks: list[Task],
                   items: dict[str, list[Item]]) -> tuple[list[Target], str]:  # fmt: skip
    """Evaluate ``cfg.model_paths`` in this process through one vLLM engine (a checkpoint of another architecture
    gets a new one); a checkpoint whose samples are all done is not loaded again."""
    from k15.checkpoint import Kind, read_info, thinks
    from k15.models import resolve_model

    paths = [resolve_model(p) for p in cfg.model_paths] or [resolve_model(None)]
    names = cfg.models or [p.name for p in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise ValueError(f"--backend vllm: {len(paths)} checkpoint(s) need as many distinct model names, got {names}")
    generator, targets = VLLMGenerator(cfg.engine), []
    try:
        for path, name in zip(paths, names, strict=True):
            info = read_info(path)
            mode = "short" if info and info.kind == Kind.long2short else "long"
            mine = with_budgets([Target(name, mode, thinks=thinks(info))], cfg.thinking_budgets)
            targets += mine
            todo = [(t, target) for t in tasks for target in mine
                    if runner.pending(sample_file(runner.out, t.name, target.key), items[t.name])[0]]  # fmt: skip
            if not todo:
                continue
            print(f"evalsuite: {name}: engine {generator.load(path)} ({path})", flush=True)
            for task, target in todo:
                runner.run_vllm(generator, task, items[task.name], target)
    finally:
        generator.close()
    return targets, "vllm in-process (" + ", ".join(map(str, paths)) + ")"


def run_in_subprocess(cfg: EvalConfig, what: str) -> Path:
    """:func:`run` in a child process (``evalsuite run --config``), so each checkpoint's vLLM engine and its memory
    go away with it; ``cfg.out`` is required and holds the config written for the child. Resumable like
    :func:`run`; RuntimeError naming ``what`` if the child fails."""
    import subprocess
    import sys

    import yaml

    if cfg.out is None:
        raise ValueError("run_in_subprocess needs an output directory")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "eval.yaml"
    config_file.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False))
    command = [sys.executable, "-m", "k15.evalsuite.cli", "run", *cfg.tasks, "--config", str(config_file)]
    if subprocess.run(command, check=False).returncode != 0:
        raise RuntimeError(f"the evaluation of {what} failed; rerun the same command to resume it")
    return out
