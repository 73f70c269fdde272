"""Rewards: the verifiers (§2.3.2, §2.3.5: the rule-based grader, the sandbox for code, the chain-of-thought
judge — one grader for evaluation and RL, :mod:`k15.grading`) and the length penalty (§2.3.3)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pydantic import Field, model_validator

from k15.config import Config
from k15.grading import CODE_GRADERS, Grade
from k15.grading.judge import CoTJudge, JudgeConfig, VerifierMode, verify
from k15.sandbox import Sandbox, SandboxLimits
from k15.train.data.formats import Problem


class RewardConfig(Config):
    """Which verifier decides r ∈ {0, 1}: math by rules, by the judge, or by rules then the judge; code by its tests
    in the sandbox."""

    verifier: VerifierMode = Field("rules", description="math answers: rules, judge, or rules_then_judge")
    judge: JudgeConfig | None = Field(None, description="the chain-of-thought judge (needed unless rules)")
    sandbox: SandboxLimits = Field(default_factory=SandboxLimits, description="limits of code answers' programs")

    @model_validator(mode="after")
    def _judge_given(self) -> RewardConfig:
        if self.verifier != "rules" and self.judge is None:
            raise ValueError(f"verifier {self.verifier!r} needs a judge (judge.endpoint and judge.model)")
        return self


class Verifier:
    """r ∈ {0, 1} for responses to k15 long-CoT prompts (the prompt opened the thinking), many at once: code and
    judged answers concurrently (bounded by the sandbox's workers / the judge's endpoint), rules on this thread."""

    def __init__(self, cfg: RewardConfig) -> None:
        self.cfg = cfg
        self.judge = CoTJudge(cfg.judge) if cfg.judge is not None and cfg.verifier != "rules" else None
        self._sandbox: Sandbox | None = None

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(self.cfg.sandbox)
        return self._sandbox

    def __call__(self, problem: Problem, response: str, finish_reason: str | None = None) -> Grade:
        options = {"sandbox": self.sandbox()} if problem.grader in CODE_GRADERS else {}
        text = str(problem.record.get("problem", problem.text))
        return verify(
            problem.grader,
            response,
            problem.record,
            problem=text,
            mode=self.cfg.verifier,
            judge=self.judge,
            think_opened_by_prompt=True,
            finish_reason=finish_reason,
            **options,
        )

    def many(self, jobs: Sequence[tuple[Problem, str, str | None]]) -> list[Grade]:
        """Grades of (problem, response, finish reason) jobs, in order."""
        blocking = [i for i, (p, _, _) in enumerate(jobs) if p.grader in CODE_GRADERS or self.judge is not None]
        grades: list[Grade | None] = [None] * len(jobs)
        if blocking:
            workers = self.sandbox().workers if self.judge is None else self.judge.cfg.concurrency
            with ThreadPoolExecutor(workers) as pool:
                for i, verdict in zip(blocking, pool.map(lambda i: self(*jobs[i]), blocking), strict=True):
                    grades[i] = verdict
        for i, job in enumerate(jobs):
            if grades[i] is None:
                grades[i] = self(*job)
        return [g for g in grades if g is not None]

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()


def length_rewards(lengths: Sequence[int], correct: Sequence[bool], wrong_answers: bool = True) -> list[float]:
    """Kimi k1.5's length reward for the k responses to one prompt (§2.3.3).

    λ_i = 0.5 − (len_i − min_len) / (max_len − min_len), and 0 for all when every length is equal;
    the reward is λ_i for a correct response and min(0, λ_i) for a wrong one (wrong answers are never rewarded
    for brevity, long wrong ones are penalised). With ``wrong_answers=False`` a wrong response gets 0 whatever its
    length (a variant, not the paper's: a quick wrong answer then costs as much as a long one).
    """
    if len(lengths) != len(correct):
        raise ValueError(f"{len(lengths)} lengths but {len(correct)} correctness flags")
    shortest, longest = min(lengths), max(lengths)
    if longest == shortest:
        return [0.0] * len(lengths)
    rewards = []
    for length, ok in zip(lengths, correct, strict=True):
        lam = 0.5 - (length - shortest) / (longest - shortest)
        rewards.append(lam if ok else (min(0.0, lam) if wrong_answers else 0.0))
    return rewards
