"""``k15 data warmup``: long-CoT SFT data by rejection sampling from a teacher behind an OpenAI-compatible endpoint.

Each problem gets k samples under a long-CoT system prompt. Samples that the shared grader (the one behind
evalsuite and the RL reward) verifies are kept as prompt/response rows in the k15 convention, at most
``keep_per_problem`` per problem. The run is resumable: OUTPUT grows problem by problem and
``OUTPUT.progress.jsonl`` lists every finished problem, including those with no correct sample, so a rerun asks
nothing about them. The journal and endpoint helpers here are shared with :mod:`k15.train.data.curate`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from k15.chat import THINK_END, split_reasoning
from k15.client import Completion, EndpointGenerator
from k15.grading import grade
from k15.jsonl import read_rows, write_rows
from k15.train.data.formats import Problem

SYSTEM_PROMPT = (
    "You are a meticulous problem solver. Think through the problem at length before answering: work step by step, "
    "try another approach when unsure, check every intermediate result and correct any mistake you find. Put all of "
    "this thinking between <think> and </think>, then state the final answer within \\boxed{}."
)

Row = dict[str, Any]


def sft_response(reasoning: str, answer: str) -> str:
    """An SFT response in the k15 convention (docs/chat-convention.md), written as it follows the prompt: the k15
    generation prompt already ends with ``<think>\\n``, so the response is ``reasoning\\n</think>\\n\\nanswer``."""
    return f"{reasoning.strip()}\n{THINK_END}\n\n{answer.strip()}"


def teacher_response(completion: Completion, extracted: str) -> str:
    """The SFT response for a teacher sample: the server's separate reasoning, else the text of the sample's own
    think block, then its answer. A sample with no think block at all is all reasoning, and its final answer (as
    the grader ``extracted`` it) becomes the answer part."""
    if completion.reasoning is not None:
        return sft_response(completion.reasoning, completion.content)
    split = split_reasoning(completion.content, think_opened_by_prompt=False)
    if split.reasoning:
        return sft_response(split.reasoning, split.answer)
    return sft_response(completion.content, f"The answer is $\\boxed{{{extracted}}}$.")


def is_correct(problem: Problem, completion: Completion) -> tuple[bool, str | None]:
    """Whether the shared grader accepts ``completion`` for ``problem``, and the answer it extracted."""
    text, opened = completion.graded_text()
    graded = grade(problem.grader, text, problem.record, think_opened_by_prompt=opened,
                   finish_reason=completion.finish_reason)  # fmt: skip
    return graded.correct, graded.extracted


class Journal:
    """A resumable per-problem run: result rows in ``output`` (each with its problem's ``id``) and one line per
    finished problem in ``output.progress.jsonl``, written after its rows. Opening drops torn lines and the rows
    of problems without a progress line, so a rerun redoes exactly the unfinished problems."""

    def __init__(self, output: str | Path) -> None:
        self.output = Path(output)
        self.progress = self.output.with_name(self.output.name + ".progress.jsonl")
        rows, rows_whole = read_rows(self.output)
        if rows and not self.progress.is_file():
            raise ValueError(f"{self.output}: exists but has no {self.progress.name}, so it is not a run to resume; "
                             "choose another output file")  # fmt: skip
        finished, progress_whole = read_rows(self.progress)
        self.done: dict[str, Row] = {str(r["id"]): r for r in finished if "id" in r}
        kept = [r for r in rows if str(r.get("id")) in self.done]
        if not progress_whole:
            write_rows(self.progress, list(self.done.values()))
        if not rows_whole or len(kept) < len(rows):
            write_rows(self.output, kept)

    def record(self, problem_id: str, rows: list[Row], progress: Row) -> None:
        """Append a finished problem: its result rows, then its progress line."""
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.output.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps({**row, "id": problem_id}, ensure_ascii=False) + "\n" for row in rows)
        entry = {"id": problem_id, **progress}
        with self.progress.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.done[problem_id] = entry

    def finished(self, problems: Iterable[Problem]) -> list[Row]:
        """The progress lines of ``problems`` that are finished."""
        return [self.done[p.id] for p in problems if p.id in self.done]


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server to sample from; ``model`` None takes the first model it serves. Sample i of a
    request is sent with seed ``seed + i``."""

    url: str
    api_key: str | None = None
    model: str | None = None
    concurrency: int = 8
    timeout_s: float = 600.0
    retries: int = 2
    seed: int = 0


class Sampler:
    """Chat completions from an :class:`Endpoint`, with at most ``concurrency`` requests in flight."""

    def __init__(self, generator: EndpointGenerator, model: str, endpoint: Endpoint) -> None:
        self.generator, self.model, self.seed = generator, model, endpoint.seed
        self.gate = asyncio.Semaphore(endpoint.concurrency)

    @classmethod
    async def open(cls, endpoint: Endpoint) -> Sampler:
        """Connect and resolve the model name; RuntimeError if the server cannot be reached."""
        generator = EndpointGenerator(endpoint.url, endpoint.api_key, endpoint.timeout_s, endpoint.retries)
        try:
            served = [m["id"] for m in await generator.served_models()]
        except Exception as exc:
            await generator.close()
            raise RuntimeError(f"cannot reach {endpoint.url}: {type(exc).__name__}: {exc}") from None
        model = endpoint.model or (served[0] if served else None)
        if model is None or model not in served:
            await generator.close()
            raise ValueError(f"model {model!r} is not served at {endpoint.url} (served: {', '.join(served) or 'none'})")
        return cls(generator, model, endpoint)

    async def sample(self, messages: list[Row], params: Row, n: int) -> list[Completion]:
        """``n`` completions of ``messages``."""

        async def one(i: int) -> Completion:
            async with self.gate:
                return await self.generator.complete(self.model, messages, {**params, "seed": self.seed + i})

        return list(await asyncio.gather(*(one(i) for i in range(n))))

    async def close(self) -> None:
        await self.generator.close()


Work = Callable[[Sampler, Problem], Awaitable[tuple[list[Row], Row]]]


def run_problems(problems: list[Problem], journal: Journal, endpoint: Endpoint, work: Work, desc: str) -> list[str]:
    """Run ``work`` (sampler, problem → result rows, progress entry) on each unfinished problem concurrently
    against ``endpoint``, journaling each as it finishes, with a progress bar. Returns the errors; their problems
    stay unfinished for a rerun. Nothing is contacted when every problem is done."""
    todo = [p for p in problems if p.id not in journal.done]
    errors: list[str] = []
    if not todo:
        return errors

    async def main() -> None:
        sampler = await Sampler.open(endpoint)
        try:
            with tqdm(total=len(problems), initial=len(problems) - len(todo), unit="problem", desc=desc,
                      dynamic_ncols=True) as bar:  # fmt: skip

                async def one(problem: Problem) -> None:
                    try:
                        rows, progress = await work(sampler, problem)
                    except Exception as exc:  # reported at the end; the problem is retried on rerun
                        errors.append(f"{problem.id}: {type(exc).__name__}: {exc}")
                    else:
                        journal.record(problem.id, rows, progress)
                    bar.update()

                await asyncio.gather(*(one(p) for p in todo))
        finally:
            await sampler.close()

    asyncio.run(main())
    return errors


def raise_errors(errors: list[str]) -> None:
    """One RuntimeError line for the problems that failed (after the summary is printed)."""
    if errors:
        raise RuntimeError(f"{len(errors)} problem(s) failed and stay unfinished (rerun to retry); first: {errors[0]}")


def summarize(finished: list[Row]) -> dict[str, float]:
    """Totals over the finished problems: samples, verified correct, kept, pass rate, problems solved."""
    samples = sum(r["samples"] for r in finished)
    correct = sum(r["correct"] for r in finished)
    return {"problems": len(finished), "samples": samples, "correct": correct,
            "kept": sum(r["kept"] for r in finished), "pass_rate": correct / samples if samples else 0.0,
            "solved": sum(r["correct"] > 0 for r in finished)}  # fmt: skip


def warmup(
    problems: list[Problem], output: str | Path, endpoint: Endpoint, *, k: int = 4, temperature: float = 1.0,
    max_tokens: int = 8192, keep_per_problem: int = 1, system_prompt: str = SYSTEM_PROMPT,
) -> dict[str, float]:  # fmt: skip
    """Rejection-sample ``k`` teacher answers per problem into SFT rows (``id``, ``prompt``, ``response``) in
    ``output``; prints and returns the summary over all finished problems (this run and earlier ones)."""
    journal = Journal(output)
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    params = {"temperature": temperature, "max_tokens": max_tokens}

    async def work(sampler: Sampler, problem: Problem) -> tuple[list[Row], Row]:
        completions = await sampler.sample([*system, {"role": "user", "content": problem.text}], params, k)
        rows, correct = [], 0
        for completion in completions:
            ok, extracted = is_correct(problem, completion)
            correct += ok
            if not ok or len(rows) >= keep_per_problem:
                continue
            response = teacher_response(completion, extracted or "")
            verified = grade(problem.grader, response, problem.record, think_opened_by_prompt=True).correct
            if verified and all(r["response"] != response for r in rows):
                rows.append({"prompt": problem.text, "response": response})
        return rows, {"samples": k, "correct": correct, "kept": len(rows)}

    errors = run_problems(problems, journal, endpoint, work, "warmup")
    summary = summarize(journal.finished(problems))
    print(f"warmup: {summary['problems']} problems, {summary['samples']} samples, {summary['correct']} verified "
          f"correct (pass rate {summary['pass_rate']:.1%}), {summary['kept']} kept in {output}; "
          f"{summary['solved']} problems solved at least once")  # fmt: skip
    raise_errors(errors)
    return summary
