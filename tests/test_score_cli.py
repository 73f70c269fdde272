import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def evalsuite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k15.evalsuite.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_score_grades_good_lines_and_reports_bad_ones(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "responses.jsonl",
        [
            json.dumps({"id": 1, "response": "<think>hmm</think>So \\boxed{\\frac12}.", "answer": "0.5"}),
            "{not json",
            json.dumps({"id": 3, "response": "\\boxed{3}", "answer": "4"}),
            json.dumps({"id": 4, "response": "\\boxed{4}"}),
            "",
            json.dumps(["a list"]),
            json.dumps({"id": 7, "response": "\\boxed{4}", "answer": "4", "finish_reason": "length"}),
            json.dumps({"id": 8, "response": 4, "answer": "4"}),
        ],
    )
    out = tmp_path / "graded.jsonl"
    result = evalsuite("score", str(source), "--task", "math500", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for number, reason in [(2, "invalid JSON"), (4, "missing 'answer'"), (6, "not a JSON object"), (8, "response")]:
        assert f"{source}:{number}: " in result.stderr
        assert reason in result.stderr
    assert f"{source}:5:" not in result.stderr  # blank lines are not errors
    assert "graded 3, accuracy 0.3333 (1/3), truncated 1, skipped 4" in result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["extracted"], r["correct"], r["truncated"]) for r in rows] == [
        (1, "\\frac12", True, False),
        (3, "3", False, False),
        (7, "4", False, True),
    ]
    assert rows[0]["answer"] == "0.5"  # the input fields are kept
    assert result.stdout == ""
    assert {p.name for p in tmp_path.iterdir()} == {"responses.jsonl", "graded.jsonl"}  # no temp file left


def test_score_to_stdout_with_think_opened_by_prompt(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "r.jsonl",
        [
            json.dumps({"response": "it is \\boxed{2}</think>\\boxed{25}", "answer": 25}),
            json.dumps({"response": "cut off at \\boxed{25}", "answer": "25"}),
        ],
    )
    result = evalsuite("score", str(source), "--task", "aime24", "--think-opened-by-prompt")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["correct"], r["truncated"]) for r in rows] == [(True, False), (False, True)]
    assert "graded 2, accuracy 0.5000 (1/2), truncated 1, skipped 0" in result.stderr


def test_score_mathvista_checks_its_fields(tmp_path: Path) -> None:
    row = {"response": "The answer is (B).", "answer": "no", "question_type": "multi_choice", "answer_type": "text"}
    source = write_lines(
        tmp_path / "mv.jsonl",
        [json.dumps({**row, "choices": ["yes", "no"], "precision": None}), json.dumps({**row, "choices": None})],
    )
    result = evalsuite("score", str(source), "--task", "mathvista")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["correct"] is True
    assert f"{source}:2: 'choices'" in result.stderr


def test_unknown_task_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "r.jsonl", [json.dumps({"response": "\\boxed{1}", "answer": "1"})])
    unknown = evalsuite("score", str(source), "--task", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("evalsuite: error: unknown task 'nope'; known tasks:")
    assert "math500" in unknown.stderr and "Traceback" not in unknown.stderr

    missing = evalsuite("score", str(tmp_path / "absent.jsonl"), "--task", "math500")
    assert missing.returncode == 2
    assert missing.stderr == f"evalsuite: error: no such file: {tmp_path / 'absent.jsonl'}\n"

    no_dir = evalsuite("score", str(source), "--task", "math500", "--out", str(tmp_path / "no" / "out.jsonl"))
    assert no_dir.returncode == 2
    assert no_dir.stderr.startswith("evalsuite: error: no such directory:")
