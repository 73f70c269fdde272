"""The chain-of-thought judge: strict verdicts, the three verifier modes, and its use by evalsuite and RL.

No judge model runs here (a 135M model's verdicts are noise, see docs/verifiers.md), so the judge is a scripted
OpenAI-compatible server on real loopback HTTP (tests/scripted.py) that reasons, then gives the verdict a table
says; the tests see exactly which answers reached it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from k15.client import Completion
from k15.evalsuite.metrics import summarize
from k15.evalsuite.runner import EvalConfig, Runner, Target, make_record
from k15.evalsuite.tasks import Item, get_task
from k15.grading.judge import CoTJudge, JudgeConfig, parse_verdict, verify
from k15.train.data.formats import Problem
from k15.train.rl.rewards import RewardConfig, Verifier
from tests.scripted import ScriptedTeacher

RECORD = {"answer": "\\frac{1}{2}"}


def judge_reply(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["messages"][0]["content"]
    answer = prompt.rpartition("Response to grade:\n")[2]
    if "one half" in answer:
        return {"content": "The response says one half, which is 1/2.\nVERDICT: CORRECT"}
    if "mumble" in answer:
        return {"content": "Hard to say. Maybe correct?"}  # no verdict line
    return {"content": "It differs from 1/2.\n**VERDICT: INCORRECT**"}


@pytest.fixture
def judge_server() -> Iterator[ScriptedTeacher]:
    server = ScriptedTeacher(judge_reply)
    yield server
    server.close()


@pytest.fixture
def judge(judge_server: ScriptedTeacher) -> CoTJudge:
    return CoTJudge(JudgeConfig(endpoint=judge_server.url, model="judge"))


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("reasoning\nVERDICT: CORRECT", "correct"),
        ("reasoning\n**VERDICT: INCORRECT**\n", "incorrect"),
        ("VERDICT: CORRECT\nbut wait, VERDICT: INCORRECT", "unknown"),  # the last line must be the verdict alone
        ("VERDICT: INCORRECT\nVERDICT: CORRECT", "unknown"),  # two different verdicts
        ("VERDICT: correct-ish", "unknown"),
        ("The answer is correct.", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_verdicts_are_parsed_strictly(text: str | None, label: str) -> None:
    assert parse_verdict(text) == label


def test_rules_then_judge_asks_only_where_the_rules_say_no(judge: CoTJudge, judge_server: ScriptedTeacher) -> None:
    def run(response: str, **options: Any):
        return verify("math", response, RECORD, problem="Half of one?", mode="rules_then_judge", judge=judge,
                      **options)  # fmt: skip

    ruled = run("x</think>The answer is \\boxed{0.5}.")
    assert ruled.correct and ruled.verifier == "rules" and judge_server.requests == []
    judged = run("x</think>The answer is one half.")
    assert judged.correct and judged.verifier == "judge" and judged.detail == "correct"
    assert "Reference answer: \\frac{1}{2}" in judge_server.requests[-1]["messages"][0]["content"]
    assert "x</think>" not in judge_server.requests[-1]["messages"][0]["content"]  # the answer only, not thinking
    unknown = run("x</think>I mumble something.")
    assert not unknown.correct and unknown.detail == "unknown"
    wrong = run("x</think>The answer is \\boxed{3}.")
    assert not wrong.correct and wrong.detail == "incorrect"
    asked = len(judge_server.requests)
    cut = run("x</think>one half", finish_reason="length")
    assert not cut.correct and cut.verifier == "rules" and len(judge_server.requests) == asked  # never judged


def test_judge_mode_decides_every_answer_and_rules_mode_never_asks(judge: CoTJudge, judge_server: ScriptedTeacher):
    assert verify("math", "</think>\\boxed{1/2}", RECORD, problem="p", mode="judge", judge=judge).detail == "incorrect"
    assert len(judge_server.requests) == 1  # the scripted judge did not find "one half": the judge's word stands
    assert verify("math", "</think>one half", RECORD, problem="p", mode="rules", judge=judge).verifier == "rules"
    assert len(judge_server.requests) == 1
    assert (
        verify(
            "countdown",
            "</think>\\boxed{1+2}",
            {"numbers": [1, 2], "target": 3, "answer": "3"},
            problem="p",
            mode="judge",
            judge=judge,
        ).verifier
        == "rules"
    )  # fmt: skip  (exactly checkable: no judge)


def test_an_unreachable_judge_is_unknown_not_correct() -> None:
    judge = CoTJudge(JudgeConfig(endpoint="http://127.0.0.1:9/v1", model="judge", timeout_s=2))
    verdict = judge("p", "1", "one")
    assert verdict.label == "unknown" and "Connection" in verdict.reasoning


def test_evalsuite_records_which_verifier_decided_and_counts_unknown_verdicts(
    judge_server: ScriptedTeacher, tmp_path: Path
) -> None:
    cfg = EvalConfig(tasks=["math500"], math_verifier="rules_then_judge", judge_endpoint=judge_server.url,
                     judge_model="judge")  # fmt: skip
    runner = Runner(cfg, tmp_path)
    task, target = get_task("math500"), Target("k15-long", "long")
    item = Item("1", "Half of one?", {"problem": "Half of one?", "answer": "\\frac{1}{2}"})
    answers = ["\\boxed{0.5}", "It is one half.", "I mumble.", "\\boxed{2}"]
    records = [make_record(task, target, item, i, Completion("think", a, "stop", 10, 5), None, 0.1, False,
                           runner.grading(task)) for i, a in enumerate(answers)]  # fmt: skip
    assert [r["verifier"] for r in records] == ["rules", "judge", "judge", "judge"]
    assert [r["correct"] for r in records] == [True, True, False, False]
    summary = summarize(records)
    assert summary["judged"] == 3 and summary["judge_unknown"] == 1 and summary["pass@1"] == 0.5


def test_evalsuite_and_rl_refuse_a_judge_mode_without_a_judge(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs judge_endpoint"):
        Runner(EvalConfig(tasks=["math500"], math_verifier="judge"), tmp_path)
    with pytest.raises(ValidationError, match="needs a judge"):
        RewardConfig(verifier="judge")


def test_rl_reward_uses_the_judge_where_configured(judge_server: ScriptedTeacher) -> None:
    verifier = Verifier(RewardConfig(verifier="rules_then_judge",
                                     judge=JudgeConfig(endpoint=judge_server.url, model="judge")))  # fmt: skip
    problem = Problem("1", "Half of one?", "math", {"problem": "Half of one?", "answer": "\\frac{1}{2}"})
    grades = verifier.many([(problem, "t</think>one half", "stop"), (problem, "t</think>\\boxed{1/2}", "stop"),
                            (problem, "t</think>\\boxed{2}", "stop")])  # fmt: skip
    assert [g.correct for g in grades] == [True, True, False]
    assert [g.verifier for g in grades] == ["judge", "rules", "judge"]
