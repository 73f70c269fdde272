import json
import threading

import pytest

from k15.grading import (
    GRADERS,
    Grade,
    answer_text,
    extract_answer,
    grade,
    grade_aime,
    grade_math,
    gsm8k_gold,
    last_boxed,
)
from tests.conftest import SHARED_DATA


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        ("so \\boxed{1} or rather \\boxed{2}.", "2"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed {x^{2}}", "x^{2}"),
        ("$\\boxed 5$", "5"),
        ("\\fbox{7}", "7"),
        ("\\boxed{3} then \\boxed{4", "3"),  # an unclosed last box is skipped
        ("no box here", None),
    ],
)
def test_last_boxed(text: str, boxed: str | None) -> None:
    assert last_boxed(text) == boxed


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("We get 3. The answer is 4.", "4"),
        ("The answer is 3.5. Done.", "3.5"),
        ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("answer is $x + 1$ since", "x + 1"),
        ("Final answer: 12", "12"),
        ("Answer: (B)", "(B)"),
        ("**Answer:** 42", "42"),
        ("**Answer**: 42", "42"),
        ("The answer is **7**.", "7"),
        ("Final Answer: The final answer is $5$. I hope it is correct.", "5"),
        ("the answer is 1, then the answer is 2", "2"),
        ("The answer is 5 cm.", "5 cm"),
        ("Answer: 9, but \\boxed{10}", "10"),  # a boxed answer wins over the other forms
        ("I am not sure.", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


def test_answer_text_keeps_only_what_follows_the_thinking() -> None:
    assert answer_text("<think>try 3</think> It is 4.") == ("It is 4.", False)
    assert answer_text("try 3</think>It is 4.", think_opened_by_prompt=True) == ("It is 4.", False)
    assert answer_text("still going", think_opened_by_prompt=True) == ("", True)
    assert answer_text("It is 4.", finish_reason="length") == ("It is 4.", True)
    assert answer_text("It is 4.", finish_reason="stop") == ("It is 4.", False)


# (gold, answer) pairs the grader must call equal / different; bench/bench_judge.py grades them with a judge too
EQUIVALENT_FORMS = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "1/2"),
    ("\\frac{1}{2}", "\\dfrac12"),
    ("0.5", "\\frac{1}{2}"),
    ("3.75", "\\frac{15}{4}"),
    ("10\\sqrt{2}", "\\sqrt{200}"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("90^\\circ", "90"),
    ("90", "90^{\\circ}"),
    ("\\text{(C)}", "C"),
    ("\\text{(C)}", "(C)"),
    ("\\text{Evelyn}", "Evelyn"),
    ("5\\text{ cm}", "5"),
    ("5", "5 cm"),
    ("[-2,7]", "x \\in [-2, 7]"),
    ("(-\\infty, 0]", "(-\\infty,0]"),
    ("\\{1,2\\}", "\\{2, 1\\}"),
    ("1,-2", "-2, 1"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
    ("10,\\!080", "10080"),
    ("\\$32,\\!348", "32,348"),
    ("x+1", "1+x"),
    ("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", "\\begin{pmatrix} 0.2 \\\\ -3.6 \\end{pmatrix}"),
]


@pytest.mark.parametrize(("gold", "answer"), EQUIVALENT_FORMS)
def test_equivalent_forms_are_correct(gold: str, answer: str) -> None:
    assert grade_math(f"Thus \\boxed{{{answer}}}.", gold) == Grade(answer, True, False)


DIFFERENT_FORMS = [
    ("\\frac{1}{2}", "0.51"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("10\\sqrt{2}", "10\\sqrt{3}"),
    ("90^\\circ", "45"),
    ("\\text{(C)}", "D"),
    ("[-2,7]", "(-2,7)"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("(1,2)", "(2,1)"),
    ("\\frac{14}{3}", "4.67"),
    ("\\text{east}", "\\text{west}"),
    ("5", "-5"),
]


@pytest.mark.parametrize(("gold", "answer"), DIFFERENT_FORMS)
def test_wrong_answers_are_wrong(gold: str, answer: str) -> None:
    grade_ = grade_math(f"\\boxed{{{answer}}}", gold)
    assert (grade_.extracted, grade_.correct) == (answer, False)


def test_the_last_boxed_answer_is_graded() -> None:
    assert grade_math("\\boxed{3} no wait, \\boxed{4}", "4").correct
    assert not grade_math("\\boxed{4} no wait, \\boxed{3}", "4").correct


def test_plain_answer_forms_are_graded() -> None:
    assert grade_math("So the answer is $\\frac{1}{2}$.", "\\frac12").correct
    assert grade_math("**Final Answer:** 0.5", "\\frac{1}{2}").correct
    assert not grade_math("I think it is one half.", "\\frac{1}{2}").correct


def test_an_answer_only_in_the_thinking_does_not_count() -> None:
    leaked = grade_math("<think>It is \\boxed{4}.</think>I am not sure.", "4")
    assert leaked == Grade(None, False, False)
    answered = grade_math("It is \\boxed{3}.</think>So \\boxed{4}.", "4", think_opened_by_prompt=True)
    assert answered == Grade("4", True, False)


def test_truncated_responses_are_wrong() -> None:
    unclosed = grade_math("<think>so it is \\boxed{4}", "4")
    assert unclosed == Grade(None, False, True)
    opened_by_prompt = grade_math("so it is \\boxed{4}", "4", think_opened_by_prompt=True)
    assert opened_by_prompt == Grade(None, False, True)
    cut = grade_math("<think>ok</think>\\boxed{4}", "4", finish_reason="length")
    assert cut == Grade("4", False, True)
    assert grade_math("<think>ok</think>\\boxed{4}", "4", finish_reason="stop") == Grade("4", True, False)


@pytest.mark.parametrize("response", [None, 42, "", "\\boxed{", "\\boxed{}", "$$$", "\\boxed{\\frac{1}{0}}", "}{" * 50])
def test_weird_input_is_wrong_not_an_error(response: object) -> None:
    assert not grade_math(response, "5").correct  # type: ignore[arg-type]
    assert not grade_aime(response, "5").correct  # type: ignore[arg-type]


def test_pathological_answers_are_bounded() -> None:
    assert not grade_math("\\boxed{" + "9" * 5000 + "}", "5").correct
    assert not grade_aime("\\boxed{" + "9" * 5000 + "}", "5").correct
    assert not grade_math("\\boxed{2^{2^{2^{2^{2^{2}}}}}}", "5").correct


def test_grading_works_off_the_main_thread() -> None:
    results: list[Grade] = []
    worker = threading.Thread(target=lambda: results.append(grade_math("\\boxed{\\dfrac12}", "0.5")))
    worker.start()
    worker.join()
    assert results == [Grade("\\dfrac12", True, False)]


@pytest.mark.parametrize("answer", ["25", "025", "25.0", "25/1", "\\frac{50}{2}", "$25$", "25^\\circ"])
def test_aime_integer_forms_are_correct(answer: str) -> None:
    assert grade_aime(f"\\boxed{{{answer}}}", "25").correct
    assert grade_aime(f"\\boxed{{{answer}}}", 25).correct


@pytest.mark.parametrize("answer", ["24", "-25", "25.5", "24.9999999", "\\frac{51}{2}", "250", "x"])
def test_aime_non_matching_answers_are_wrong(answer: str) -> None:
    assert not grade_aime(f"\\boxed{{{answer}}}", "25").correct


def test_gsm8k() -> None:
    record = {"answer": "He makes 70,000 - 60,000 = <<70000-60000=10000>>10,000\n#### 10,000"}
    assert gsm8k_gold(record["answer"]) == "10000"
    assert grade("gsm8k", "The answer is 10,000.", record).correct
    assert grade("gsm8k", "The answer is $10000.", record).correct
    assert grade("gsm8k", "\\boxed{\\$10,000}", record).correct
    assert grade("gsm8k", "So he made 10000 dollars. The answer is 10000 dollars", record).correct
    assert not grade("gsm8k", "The answer is 1000.", record).correct
    assert not grade("gsm8k", "He made 10000 dollars.", record).correct  # no final-answer form


def test_registry() -> None:
    assert {"math500", "aime24", "aime25", "aime", "gsm8k", "mathvista"} <= set(GRADERS)
    assert grade("math500", "\\boxed{\\frac{1}{2}}", {"answer": "0.5"}).correct
    assert grade("aime24", "\\boxed{025}", {"answer": "25"}).correct
    assert grade("aime25", "<think>hmm</think>\\boxed{70}", {"answer": "70"}).correct
    assert not grade("aime", "hmm</think>\\boxed{70}", {"answer": "70"}, finish_reason="length").correct
    mathvista = {"answer": "7", "question_type": "free_form", "answer_type": "integer", "choices": None}
    assert grade("mathvista", "The answer is 7.", mathvista).correct
    with pytest.raises(ValueError, match=r"unknown grader .nope.; known graders: .*math500"):
        grade("nope", "\\boxed{1}", {"answer": "1"})


def _rows(name: str) -> list[dict]:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"benchmark data not found at {path} (shared/data is absent)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_math500_golds_grade_themselves_correct() -> None:
    rows = _rows("math500/test.jsonl")
    correct = sum(grade("math500", f"\\boxed{{{row['answer']}}}", row).correct for row in rows)
    assert correct >= 0.99 * len(rows)


def test_math500_golds_of_other_problems_grade_wrong() -> None:
    rows = _rows("math500/test.jsonl")
    shifted = zip(rows, rows[1:] + rows[:1], strict=True)
    correct = sum(grade("math500", f"\\boxed{{{row['answer']}}}", other).correct for row, other in shifted)
    assert correct < 0.05 * len(rows)


@pytest.mark.parametrize("name", ["aime24/test.jsonl", "aime25/test.jsonl"])
def test_aime_golds_grade_themselves_correct(name: str) -> None:
    rows = _rows(name)
    assert all(grade("aime", f"The answer is \\boxed{{{row['answer']}}}.", row).correct for row in rows)
    for row in rows:
        assert not grade("aime", f"\\boxed{{{row['answer']}}}", {"answer": int(row["answer"]) + 1}).correct
