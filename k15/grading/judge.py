"""The chain-of-thought reward model (Kimi k1.5 §2.3.2): a judge LLM behind any OpenAI-compatible endpoint that
reasons step by step, then says whether a response's final answer is equivalent to the reference.

Its verdict is parsed strictly: the last non-empty line must be exactly ``VERDICT: CORRECT`` or
``VERDICT: INCORRECT``; anything else is "unknown" — counted and reported, never correct. Evaluation
(``evalsuite run --math-verifier``) and RL (``reward.verifier``) use it through :func:`verify`, which records which
verifier decided each sample:

- ``rules``: the rule-based grader only (the default);
- ``judge``: the judge decides every answered, untruncated response;
- ``rules_then_judge``: the rules first; the judge where they found no answer or called it wrong (a disagreement
  of form — "0.5" against "\\frac{1}{2}" in words — is what rules miss).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import Field

from k15.config import Config
from k15.grading import Grade, answer_text, grade

VerifierMode = Literal["rules", "judge", "rules_then_judge"]
JUDGEABLE = frozenset({"math", "math500", "aime", "aime24", "aime25", "gsm8k"})
"""Graders whose answers a judge can compare with a reference (code runs its tests; Countdown checks exactly)."""

JUDGE_PROMPT = """You are grading the final answer to a math problem against the reference answer.

Problem:
{problem}

Reference answer: {reference}

Response to grade:
{answer}

Think step by step: find the response's final answer, then decide whether it is mathematically equivalent to the \
reference (the same value, expression or set, in any notation). Then write your verdict alone on the last line, \
exactly "VERDICT: CORRECT" or "VERDICT: INCORRECT"."""

_VERDICT = re.compile(r"VERDICT:\s*(CORRECT|INCORRECT)")


class JudgeConfig(Config):
    """Where the judge model is served and how it is asked."""

    endpoint: str = Field(description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    model: str = Field(description="the judge's model name at that endpoint")
    api_key: str = "EMPTY"
    max_tokens: int = Field(1024, ge=16, description="tokens for the judge's reasoning and verdict")
    temperature: float = Field(0.0, ge=0)
    timeout_s: float = Field(300.0, gt=0)
    concurrency: int = Field(16, ge=1, description="judge requests in flight at once (RL rewards)")


@dataclass(frozen=True)
class Verdict:
    """The judge's label ("correct", "incorrect" or "unknown"), its reasoning and its cost."""

    label: Literal["correct", "incorrect", "unknown"]
    reasoning: str
    completion_tokens: int
    seconds: float


def parse_verdict(text: str | None) -> Literal["correct", "incorrect", "unknown"]:
    """The verdict on the last non-empty line ("VERDICT: CORRECT" / "VERDICT: INCORRECT", optionally in ``**``);
    "unknown" for anything else, or when an earlier line states a different verdict."""
    lines = [line.strip().strip("*").strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return "unknown"
    last = _VERDICT.fullmatch(lines[-1])
    if last is None:
        return "unknown"
    stated = {m.group(1) for line in lines for m in _VERDICT.finditer(line)}
    return "unknown" if len(stated) > 1 else ("correct" if last.group(1) == "CORRECT" else "incorrect")


class CoTJudge:
    """Asks the judge model of :class:`JudgeConfig` for a verdict (blocking; call it from a thread)."""

    def __init__(self, cfg: JudgeConfig) -> None:
        import openai

        self.cfg = cfg
        self.client = openai.OpenAI(base_url=cfg.endpoint, api_key=cfg.api_key, timeout=cfg.timeout_s)

    def __call__(self, problem: str, reference: str, answer: str) -> Verdict:
        started = time.monotonic()
        prompt = JUDGE_PROMPT.format(problem=problem.strip(), reference=reference, answer=answer.strip())
        try:
            reply = self.client.chat.completions.create(
                model=self.cfg.model, messages=[{"role": "user", "content": prompt}],
                max_tokens=self.cfg.max_tokens, temperature=self.cfg.temperature,
            )  # fmt: skip
        except Exception as exc:  # an unreachable judge decides nothing: unknown, with the reason
            return Verdict("unknown", f"{type(exc).__name__}: {exc}"[:300], 0, time.monotonic() - started)
        message = reply.choices[0].message
        text = "\n".join(part for part in (getattr(message, "reasoning_content", None), message.content) if part)
        tokens = reply.usage.completion_tokens if reply.usage else 0
        return Verdict(parse_verdict(message.content), text, tokens, time.monotonic() - started)


def verify(
    grader: str,
    response: str,
    record: Mapping[str, Any],
    *,
    problem: str,
    mode: VerifierMode = "rules",
    judge: CoTJudge | None = None,
    think_opened_by_prompt: bool = False,
    finish_reason: str | None = None,
    **options: Any,
) -> Grade:
    """Grade with the rules, the judge or both (``mode``); ``verifier`` says which decided, and for the judge
    ``detail`` is its verdict ("correct" / "incorrect" / "unknown"). A truncated response is wrong either way."""
    ruled = grade(grader, response, record, think_opened_by_prompt=think_opened_by_prompt,
                  finish_reason=finish_reason, **options)  # fmt: skip
    if mode == "rules" or grader not in JUDGEABLE or ruled.truncated:
        return ruled
    if mode == "rules_then_judge" and ruled.correct:
        return ruled
    if judge is None:
        raise ValueError(f"verifier mode {mode!r} needs a judge (configure its endpoint and model)")
    answer, _ = answer_text(response, think_opened_by_prompt, finish_reason)
    if not answer.strip():
        return replace(ruled, verifier="judge", detail="incorrect")  # nothing to judge
    verdict = judge(problem, str(record["answer"]), answer)
    return replace(ruled, correct=verdict.label == "correct", verifier="judge", detail=verdict.label)
