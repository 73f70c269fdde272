"""The CPU demo task: deterministic generation, levels, exact answers, verified traces, disjoint splits."""

from __future__ import annotations

import json
import operator
import re
from pathlib import Path

import pytest

from k15.evalsuite.tasks import get_task
from k15.grading import grade
from k15.prompts import MATH_PROMPT
from k15.train.data.arith import LEVELS, generate, make_splits, trace
from k15.train.data.formats import load_problems, load_sft_examples

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def recompute(row: dict) -> tuple[int, list[int]]:
    """The answer the steps compute (each step recomputed, chained from the previous one) and all operands."""
    value, operands = None, []
    for step in row["steps"]:
        a, op, n, result = STEP.fullmatch(step).groups()  # type: ignore[union-attr]
        exact = OPS[op](int(a), int(n))
        assert exact == int(result) and float(exact).is_integer(), step
        assert value is None or int(a) == value, f"step {step!r} does not continue from {value}"
        value = int(result)
        operands += [int(a), int(n)]
    assert value is not None
    return value, operands


def test_generation_is_deterministic_and_levels_take_turns() -> None:
    rows = generate(100, seed=3)
    assert rows == generate(100, seed=3)
    assert [r["problem"] for r in rows] != [r["problem"] for r in generate(100, seed=4)]
    assert [r["difficulty"] for r in rows[:10]] == [1, 2, 3, 4, 5] * 2
    assert len({r["problem"] for r in rows}) == len({r["id"] for r in rows}) == 100
    assert {r["grader"] for r in rows} == {"math"}
    assert all(len(r["steps"]) == r["difficulty"] for r in rows)
    assert {r["difficulty"] for r in generate(6, seed=0, levels=(2, 4))} == {2, 4}
    with pytest.raises(ValueError, match="levels"):
        generate(3, levels=(0, 6))


def test_answers_are_the_integers_the_steps_compute() -> None:
    rows = generate(500, seed=0)
    for row in rows:
        value, operands = recompute(row)
        assert row["answer"] == str(value) and 0 <= value < 1000
        assert re.fullmatch(r"\d+", row["answer"])
        if row["difficulty"] == 1:
            assert max(operands) <= 20, row
        assert row["problem"].endswith("have now?")
    biggest = {level: max(max(recompute(r)[1]) for r in rows if r["difficulty"] == level) for level in LEVELS}
    assert biggest[5] > biggest[1], "higher levels should use larger numbers"
    assert {step.split()[1] for r in rows for step in r["steps"]} == {"+", "-", "*", "/"}


def test_every_trace_is_verified_and_graded_correct_at_every_level() -> None:
    rows = generate(250, seed=7)
    for row in rows:
        response = trace(row)
        assert not response.startswith("<think>"), "the k15 prompt opens the think block"
        reasoning, answer = response.split("\n</think>\n\n")
        assert len(reasoning.splitlines()) == len(row["steps"]) + 1 and reasoning.splitlines()[-1].startswith("Check")
        assert answer == f"The answer is $\\boxed{{{row['answer']}}}$."
        assert grade("math", response, row, think_opened_by_prompt=True).correct, row
        wrong = {**row, "answer": str(int(row["answer"]) + 1)}
        assert not grade("math", response, wrong, think_opened_by_prompt=True).correct
    with pytest.raises(ValueError, match="do not end at the answer"):
        trace({**rows[0], "answer": "1000"})
    with pytest.raises(ValueError, match="wrong step"):
        trace({**rows[0], "steps": ["2 + 2 = 5"], "answer": "5"})


def test_splits_are_disjoint_and_load_as_training_data(tmp_path: Path) -> None:
    paths = make_splits(tmp_path / "arith", train=120, heldout=40, sft=30, seed=1)
    assert {name: p.name for name, p in paths.items()} == {
        "heldout": "heldout.jsonl", "train": "train.jsonl", "sft": "sft.jsonl"}  # fmt: skip
    train = load_problems(paths["train"], prompt_template=MATH_PROMPT)
    heldout = load_problems(paths["heldout"])
    sft = load_sft_examples(paths["sft"])
    assert (len(train), len(heldout), len(sft)) == (120, 40, 30)
    assert {p.difficulty for p in train} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert train[0].text.endswith("put your final answer within \\boxed{}.")
    train_texts = {p.record["problem"] for p in train}
    heldout_texts = {p.record["problem"] for p in heldout}
    assert not train_texts & heldout_texts
    for example in sft:
        problem = example.prompt.split("\n\n")[0]
        assert problem not in train_texts | heldout_texts
    rows = {r["id"]: r for r in generate(190, seed=1)}
    for line, example in zip(paths["sft"].read_text().splitlines(), sft, strict=True):
        row = rows[json.loads(line)["id"]]
        assert example.prompt == MATH_PROMPT.format(problem=row["problem"])
        assert grade("math", example.response, row, think_opened_by_prompt=True).correct


def test_arith_task_reads_the_generated_heldout_split(tmp_path: Path) -> None:
    make_splits(tmp_path / "arith", train=10, heldout=15, sft=0, seed=2)
    task = get_task("arith")
    assert task.grader == "math" and task.sources[0].local_file == "arith/heldout.jsonl"
    items = task.items(tmp_path)
    assert len(items) == 15
    heldout = generate(15, seed=2)
    assert [item.id for item in items] == [r["id"] for r in heldout]
    assert items[0].text == MATH_PROMPT.format(problem=heldout[0]["problem"])
    assert grade(task.grader, trace(heldout[0]), items[0].record, think_opened_by_prompt=True).correct
