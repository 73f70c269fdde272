"""The Countdown demo task: its generator, its search traces and its grader (the eval metric and the RL reward)."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pytest

from k15.grading import grade
from k15.grading.countdown import ExpressionError, check_solution, evaluate
from k15.train.data.countdown import LEVELS, generate, make_splits, solution_paths, solve, trace

ROW = {"numbers": [3, 7, 12], "target": 33}


def answered(expression: str) -> str:
    """A response after a k15 prompt (the think block opened by the template) ending in ``expression``."""
    return f"Goal 33 from 12 7 3.\n</think>\n\nThe answer is $\\boxed{{{expression}}}$."


@pytest.mark.parametrize("expression", ["7*3+12", "12+3*7", "(7*3)+12", "3 \\times 7 + 12", "12 + 7 × 3 = 33"])
def test_right_expressions_are_graded_right(expression: str) -> None:
    assert grade("countdown", answered(expression), ROW, think_opened_by_prompt=True).correct


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("7*3+13", "uses"),  # a number that is not given
        ("7*3+12+3", "uses"),  # a number used twice
        ("7*3+3", "uses"),  # a number left out (and the wrong value)
        ("12*3-7", "evaluates to 29"),  # every number once, the wrong value
        ("7*3+12 = 34", "claims"),  # a claimed result that is not the target
        ("(7*3+12", "not an arithmetic expression"),  # malformed
        ("12/(7-7)*3", "division by zero"),
        ("12**3", "only whole numbers"),  # a power
        ("__import__('os')", "only whole numbers"),
        ("1.5*22", "only whole numbers"),
    ],
)
def test_wrong_expressions_are_graded_wrong_with_the_reason(expression: str, why: str) -> None:
    assert not grade("countdown", answered(expression), ROW, think_opened_by_prompt=True).correct
    with pytest.raises(ExpressionError, match=why):
        check_solution(expression, ROW["numbers"], ROW["target"])


def test_division_is_exact_and_by_zero_is_an_error() -> None:
    assert evaluate("7/2*2")[0] == 7  # fractions, not integer division
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate("3/(7-7)")


def test_a_truncated_or_answerless_response_is_wrong() -> None:
    assert not grade("countdown", "Try 12+7=19", ROW, think_opened_by_prompt=True).correct  # never closed
    cut = grade("countdown", answered("7*3+12"), ROW, think_opened_by_prompt=True, finish_reason="length")
    assert not cut.correct and cut.truncated
    assert grade("countdown", "Goal.\n</think>\n\nNo idea.", ROW, think_opened_by_prompt=True).extracted is None


def test_generated_problems_are_distinct_solvable_levelled_and_deterministic() -> None:
    rows = generate(200, seed=3)
    assert rows == generate(200, seed=3) and rows != generate(200, seed=4)
    assert Counter(r["difficulty"] for r in rows) == {level: 50 for level in LEVELS}
    assert len({(tuple(sorted(r["numbers"])), r["target"]) for r in rows}) == 200
    for row in rows:
        level = LEVELS[row["difficulty"]]
        assert len(row["numbers"]) == level.size and all(level.low <= n <= level.high for n in row["numbers"])
        assert level.admits(solution_paths(tuple(sorted(row["numbers"])))[row["target"]])
        check_solution(row["answer"], row["numbers"], row["target"])  # the stored solution verifies
        assert row["grader"] == "countdown"
    with pytest.raises(ValueError, match="levels"):
        generate(4, levels=(9,))
    with pytest.raises(ValueError, match="cannot be made"):
        solve([1, 1, 1], 97)


def test_every_trace_that_finds_verifies_and_the_search_varies_between_samples() -> None:
    rows = generate(80, seed=0)
    spreads, found_by_level = [], Counter()
    for i, row in enumerate(rows):
        lengths = []
        for sample in range(4):
            text, found = trace(row, seed=i * 10 + sample)
            reasoning = text.partition("\n</think>\n\n")[0]
            assert reasoning.startswith(f"Goal {row['target']} from ") and "<think>" not in text
            if found:
                found_by_level[row["difficulty"]] += 1
                assert "Found." in reasoning and "Check: " in reasoning
                assert grade("countdown", text, row, think_opened_by_prompt=True).correct
            else:
                assert not grade("countdown", text, row, think_opened_by_prompt=True).correct
            lengths.append(len(reasoning.splitlines()))
        spreads.append(statistics.pstdev(lengths))
    assert found_by_level[1] == found_by_level[2] == 80  # three numbers: the budget covers the whole tree
    assert 0 < found_by_level[4] < 80  # four numbers, few paths: the budget sometimes runs out
    assert sum(s > 0 for s in spreads) > len(rows) / 2  # one problem's samples search differently
    backtracks = sum("Dead end." in trace(row, seed=1)[0] for row in rows)
    assert backtracks > len(rows) / 2


def test_make_splits_writes_disjoint_splits_and_verified_traces(tmp_path: Path) -> None:
    paths = make_splits(tmp_path, train=40, heldout=20, sft=40, seed=1)
    rows = {name: [json.loads(line) for line in path.read_text().splitlines()] for name, path in paths.items()}
    assert len(rows["train"]) == 40 and len(rows["heldout"]) == 20 and 0 < len(rows["sft"]) <= 40
    ids = [{r["id"] for r in rows[name]} for name in ("train", "heldout", "sft")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    problems = {r["id"]: r for r in generate(100, seed=1)}
    for example in rows["sft"]:
        assert problems[example["id"]]["problem"] in example["prompt"]
        assert grade("countdown", example["response"], problems[example["id"]], think_opened_by_prompt=True).correct


def test_traces_with_drawn_budgets_keep_the_searches_that_give_up(tmp_path: Path) -> None:
    """``min_budget``: each trace draws how many two-number states it may try; one that spends its budget says so
    and answers nothing (graded wrong), and stays in the SFT data, so the warm-up model learns to end a failed
    search. Without it, only traces that found the target are written (the test above)."""
    paths = make_splits(tmp_path, train=10, heldout=10, sft=300, seed=0, levels=[1, 2], min_budget=3)
    examples = [json.loads(line) for line in paths["sft"].read_text().splitlines()]
    problems = {r["id"]: r for r in generate(320, seed=0, levels=[1, 2])}
    assert len(examples) == 300, "every trace is kept"
    gave_up = [e for e in examples if e["response"].endswith("I could not find an expression.")]
    assert 0.03 * len(examples) < len(gave_up) < 0.25 * len(examples)
    for e in examples:
        graded = grade("countdown", e["response"], problems[e["id"]], think_opened_by_prompt=True)
        assert graded.correct is (e not in gave_up), e["response"]
        if e in gave_up:
            assert "No expression found within my budget.\n</think>" in e["response"] and "Found." not in e["response"]
    tries = [e["response"].count("Dead end.") for e in gave_up]
    assert min(tries) >= 3 and len(set(tries)) > 2, "budgets vary from 3 to 12 states"
    with pytest.raises(ValueError, match="min_budget must be between 1 and 12"):
        make_splits(tmp_path / "bad", min_budget=0)


def test_a_step_is_tried_once_when_numbers_repeat() -> None:
    """With 5, 5 and 15 the search used to try ``15+5`` twice (once per 5): one try per distinct step."""
    row = {"numbers": [5, 5, 15], "target": 90}
    for seed in range(20):
        tries = [line.split(",")[0] for line in trace(row, seed)[0].splitlines() if line.startswith("Try ")]
        assert len(tries) == len(set(tries)), tries
