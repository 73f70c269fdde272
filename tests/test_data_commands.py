"""``k15 data warmup`` / ``curate`` / ``demo``: format rules, and both endpoint commands end to end over real HTTP.

No real teacher model runs here, so the endpoint is a scripted teacher: a real OpenAI-compatible HTTP server on
loopback (the real ``openai`` client talks to it) that answers chat completions from a table, right for some
problems and sample seeds and wrong for others. It counts requests, which shows what a resumed run asks.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k15.app.data_cli import DATA_COMMANDS, add_data_parser
from k15.grading import grade
from k15.prompts import MATH_PROMPT
from k15.train.data.curate import format_rule
from k15.train.data.formats import load_problems, load_sft_examples
from tests.scripted import ScriptedTeacher


@pytest.fixture
def teacher(request: pytest.FixtureRequest) -> Iterator[ScriptedTeacher]:
    server = ScriptedTeacher(request.param)
    yield server
    server.close()


def k15_data(*argv: str) -> int:
    """Parse ``k15 data …`` as the CLI does and run the command."""
    parser = argparse.ArgumentParser(prog="k15")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *argv])
    return DATA_COMMANDS[(args.command, args.data_command)](args)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def problem_of(body: dict[str, Any]) -> str:
    """The tag [name] of the problem in the request's user message."""
    return re.search(r"\[(\w+)\]", body["messages"][-1]["content"]).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("problem", "answer", "rule"),
    [
        ("What is 2 + 3?", "5", None),
        ("Find $x$ if $2x = \\frac{1}{2}$.", "\\frac{1}{4}", None),
        ("Which day comes after Sunday?", "\\text{Monday}", None),
        ("Which is larger? (A) 3 (B) 5 (C) 4", "B", "multiple-choice"),
        ("Pick one:\nA. 3\nB. 5", "5", "multiple-choice"),
        ("$\\textbf{(A) }12 \\qquad \\textbf{(B) }13$", "13", "multiple-choice"),
        ("What is the best option?", "$\\text{(C)}$", "multiple-choice"),
        ("Is 7 prime?", "Yes", "true-false"),
        ("True or false: 2 is odd.", "\\text{false}", "true-false"),
        ("Prove that there are infinitely many primes.", "infinitely many", "proof"),
        ("Show that $n^2 \\ge n$ for all integers $n$.", "n^2 \\ge n", "proof"),
        ("Describe the set of solutions.", "the set of all points on the unit circle", "non-math-answer"),
        ("What is it?", "$ $", "non-math-answer"),
        ("What is $e^0$?", "1", None),
    ],
)
def test_format_rules(problem: str, answer: str, rule: str | None) -> None:
    assert format_rule(problem, answer) == rule


WARMUP_PROBLEMS = [
    {"id": "solid", "problem": "What is 2 + 3? [solid]", "answer": "5"},
    {"id": "wrong", "problem": "What is 7 * 6? [wrong]", "answer": "42"},
    {"id": "half", "problem": "What is 9 - 4? [half]", "answer": "5"},
    {"id": "plain", "problem": "What is 10 / 2? [plain]", "answer": "5"},
]


def warmup_reply(body: dict[str, Any]) -> dict[str, Any]:
    """solid: right, reasoning in its own field; wrong: always wrong; half: right at odd seeds, thinking inline;
    plain: right, no think block at all."""
    name, seed = problem_of(body), body["seed"]
    assert body["messages"][0]["role"] == "system" and body["temperature"] == 1.0
    if name == "solid":
        return {"reasoning_content": "2 plus 3 is 5. Check: 5 - 3 = 2.", "content": "So the answer is $\\boxed{5}$."}
    if name == "wrong":
        return {"reasoning_content": "7 times 6... 48?", "content": "$\\boxed{48}$"}
    if name == "half":
        return {"content": f"<think>9 minus 4 is {5 if seed % 2 else 6}.</think>\\boxed{{{5 if seed % 2 else 6}}}"}
    return {"content": "10 divided by 2 is 5, so \\boxed{5}."}


@pytest.mark.parametrize("teacher", [warmup_reply], indirect=True)
def test_warmup_keeps_verified_samples_and_resumes(teacher: ScriptedTeacher, tmp_path: Path, capsys) -> None:
    source = write_rows(tmp_path / "problems.jsonl", WARMUP_PROBLEMS)
    out = tmp_path / "sft" / "warmup.jsonl"
    args = ["warmup", "--endpoint", teacher.url, "--input", str(source), "--output", str(out), "--concurrency", "3"]
    assert k15_data(*args) == 0
    assert len(teacher.requests) == 16 and {r["model"] for r in teacher.requests} == {"teacher"}
    assert sorted(r["seed"] for r in teacher.requests if "[half]" in r["messages"][-1]["content"]) == [0, 1, 2, 3]
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"solid", "half", "plain"}, "one verified sample per solved problem"
    assert rows["solid"]["response"] == "2 plus 3 is 5. Check: 5 - 3 = 2.\n</think>\n\nSo the answer is $\\boxed{5}$."
    assert rows["half"]["response"] == "9 minus 4 is 5.\n</think>\n\n\\boxed{5}"
    assert rows["plain"]["response"] == "10 divided by 2 is 5, so \\boxed{5}.\n</think>\n\nThe answer is $\\boxed{5}$."
    problems = {p.text: p for p in load_problems(source, prompt_template=MATH_PROMPT)}
    for example in load_sft_examples(out):
        problem = problems[example.prompt]
        assert grade("math", example.response, problem.record, think_opened_by_prompt=True).correct
    summary = capsys.readouterr().out
    assert "4 problems, 16 samples, 10 verified correct (pass rate 62.5%), 3 kept" in summary

    assert k15_data(*args) == 0
    assert len(teacher.requests) == 16, "a finished run asks nothing again"
    assert "4 problems, 16 samples, 10 verified correct" in capsys.readouterr().out

    progress = out.with_name("warmup.jsonl.progress.jsonl")
    lines = progress.read_text().splitlines()
    progress.write_text("\n".join(lines[:-1]) + '\n{"id": "to', encoding="utf-8")  # killed mid-write
    last = json.loads(lines[-1])["id"]
    assert k15_data(*args, "-k", "2") == 0
    assert len(teacher.requests) == 18, "only the unfinished problem is asked again"
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(rows) and ids.count(last) == (last != "wrong")


CURATE_PROBLEMS = [
    {"id": "quarter", "problem": "What is 3 + 4? [quarter]", "answer": "7", "level": "Level 2"},
    {"id": "easy", "problem": "What is 1 + 1? [easy]", "answer": "2"},
    {"id": "hack", "problem": "What is 6 * 7? [hack]", "answer": "42"},
    {"id": "choice", "problem": "Which is larger? (A) 3 (B) 5 [choice]", "answer": "B"},
    {"id": "tf", "problem": "True or false: 4 is even. [tf]", "answer": "True"},
    {"id": "proof", "problem": "Prove that 2 + 2 = 4. [proof]", "answer": "2 + 2 = 4"},
    {"id": "prose", "problem": "Describe the graph of y = x. [prose]", "answer": "a straight line through the origin"},
]


def curate_reply(body: dict[str, Any]) -> dict[str, Any]:
    """Direct answers (thinking disabled): right only for hack, and then in the reasoning field, as a reasoning
    parser that never saw ``</think>`` leaves it. Samples: quarter right at seeds 0 and 4, easy always right."""
    name, seed = problem_of(body), body["seed"]
    gold = {"quarter": "7", "easy": "2", "hack": "42"}[name]
    if body.get("chat_template_kwargs") == {"enable_thinking": False}:
        assert body["max_tokens"] == 64 and "final answer" in body["messages"][-1]["content"]
        return {"reasoning_content": f"\\boxed{{{gold}}}"} if name == "hack" else {"content": "\\boxed{0}"}
    right = name == "easy" or (name == "quarter" and seed % 4 == 0)
    return {"reasoning_content": "thinking", "content": f"\\boxed{{{gold if right else 99}}}"}


@pytest.mark.parametrize("teacher", [curate_reply], indirect=True)
def test_curate_scores_difficulty_removes_hackable_and_unverifiable_items(
    teacher: ScriptedTeacher, tmp_path: Path, capsys
) -> None:
    source = write_rows(tmp_path / "pool.jsonl", CURATE_PROBLEMS)
    out = tmp_path / "curated.jsonl"
    args = ["curate", "--endpoint", teacher.url, "--model", "teacher", "--input", str(source), "--output", str(out)]
    assert k15_data(*args) == 0
    direct = [r for r in teacher.requests if "chat_template_kwargs" in r]
    assert len(direct) == 3 * 8 and len(teacher.requests) == 3 * 8 + 2 * 8, "no request for rule-removed items"
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"quarter", "easy"}
    assert (rows["quarter"]["pass_rate"], rows["quarter"]["difficulty"]) == (0.25, 0.75)
    assert (rows["easy"]["pass_rate"], rows["easy"]["difficulty"]) == (1.0, 0.0)
    assert rows["quarter"]["problem"] == CURATE_PROBLEMS[0]["problem"] and rows["quarter"]["level"] == "Level 2"
    assert {p.id: p.difficulty for p in load_problems(out)} == {"quarter": 0.75, "easy": 0.0}, "a prompt set"
    report = json.loads(out.with_name("curated.jsonl.report.json").read_text())
    removed = {"multiple-choice": 1, "true-false": 1, "proof": 1, "non-math-answer": 1, "hackable": 1}
    assert report == {"problems": 7, "kept": 2, "removed": removed, "mean_pass_rate": 0.625}
    assert "7 problems, 2 kept" in capsys.readouterr().out

    assert k15_data(*args) == 0
    assert len(teacher.requests) == 40, "a finished run asks nothing again"
    assert json.loads(out.with_name("curated.jsonl.report.json").read_text()) == report


def test_errors_are_one_line_and_name_the_cause(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "problems.jsonl", WARMUP_PROBLEMS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    base = ["--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--retries", "0"]
    with pytest.raises(RuntimeError, match=f"cannot reach {re.escape(closed)}"):
        k15_data("warmup", "--endpoint", closed, *base)
    with pytest.raises(ValueError, match="not found"):
        k15_data("curate", "--endpoint", closed, "--input", str(tmp_path / "missing.jsonl"), "--output", "x.jsonl")
    with pytest.raises(ValueError, match="unknown grader 'nope'"):
        k15_data("curate", "--endpoint", closed, *base, "--grader", "nope")
    with pytest.raises(ValueError, match="prompt-template"):
        k15_data("warmup", "--endpoint", closed, *base, "--prompt-template", "Solve: {question}")
    foreign = write_rows(tmp_path / "foreign.jsonl", [{"prompt": "p", "response": "r"}])
    with pytest.raises(ValueError, match="not a run to resume"):
        k15_data("warmup", "--endpoint", closed, *base[:2], "--output", str(foreign))
    teacher = ScriptedTeacher(warmup_reply)
    try:
        with pytest.raises(ValueError, match=r"model 'big' is not served .* \(served: teacher\)"):
            k15_data("warmup", "--endpoint", teacher.url, "--model", "big", *base)
    finally:
        teacher.close()


def test_demo_command_writes_the_splits(tmp_path: Path, capsys) -> None:
    assert k15_data("demo", str(tmp_path / "arith"), "--train", "20", "--heldout", "10", "--sft", "5") == 0
    assert sorted(p.name for p in (tmp_path / "arith").iterdir()) == ["heldout.jsonl", "sft.jsonl", "train.jsonl"]
    assert len(load_problems(tmp_path / "arith" / "train.jsonl")) == 20
    assert "sft" in capsys.readouterr().out


def test_demo_command_draws_the_levels_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "countdown"
    assert k15_data("demo", str(out), "--task", "countdown", "--levels", "1,2", "--train", "30", "--heldout", "6",
                    "--sft", "6") == 0  # fmt: skip
    levels = {
        json.loads(line)["difficulty"] for name in ("train", "heldout") for line in (out / f"{name}.jsonl").open()
    }
    assert levels == {1, 2}
    with pytest.raises(ValueError, match=r"levels must be a non-empty selection of \(1, 2, 3, 4\), got \(1, 7\)"):
        k15_data("demo", str(out), "--task", "countdown", "--levels", "1,7")


def test_warmup_and_curate_read_the_typed_config(tmp_path: Path) -> None:
    """``--config`` / ``--set`` like every command; flags win over the file; a wrong key is named."""
    from k15.app.data_cli import CurateConfig, WarmupConfig, _load

    source = write_rows(tmp_path / "p.jsonl", [{"problem": "1+1?", "answer": "2"}])
    config = tmp_path / "curate.yaml"
    config.write_text(f"endpoint: http://127.0.0.1:9/v1\ninput: {source}\noutput: {tmp_path / 'o.jsonl'}\nk: 3\n")
    parser = argparse.ArgumentParser(prog="k15")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "curate", "--config", str(config), "--set", "hack_tries=2", "-k", "5"])
    cfg = _load(CurateConfig, args)
    assert (cfg.k, cfg.hack_tries, cfg.max_tokens, cfg.input) == (5, 2, 4096, str(source))
    config.write_text(config.read_text() + "hack_trys: 1\n")
    with pytest.raises(ValueError, match="key 'hack_trys': unknown key"):
        k15_data("curate", "--config", str(config))
    with pytest.raises(ValueError, match="key 'endpoint': required but missing"):
        _load(WarmupConfig, parser.parse_args(["data", "warmup", "--input", str(source), "--output", "x.jsonl"]))
