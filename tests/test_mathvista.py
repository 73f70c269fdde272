import json
from pathlib import Path

import pytest

from k15.grading.mathvista import (
    build_extraction_prompt,
    extract_mathvista,
    grade_mathvista,
    levenshtein,
    normalize_extracted_answer,
    option_letters,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

ANGLES = {
    "question_type": "multi_choice",
    "answer_type": "text",
    "choices": ["135°", "140°", "145°", "150°"],
    "answer": "145°",
    "precision": None,
}


def free_form(answer: str, answer_type: str, precision: int | None = None) -> dict:
    return {
        "question_type": "free_form",
        "answer_type": answer_type,
        "choices": None,
        "answer": answer,
        "precision": precision,
    }


@pytest.mark.parametrize(
    "response",
    [
        "C",
        "c",
        "(C)",
        "C.",
        "C) 145°",
        "Answer: C",
        "The answer is C.",
        "the answer is (C) 145°",
        "\\boxed{C}",
        "The angle is 145°.",  # the choice text itself
        "The answer is 145°",
        "The answer is 145 °",  # not a choice: the nearest one by edit distance
        "<think>Maybe (A)?</think>So the answer is (C).",
    ],
)
def test_multi_choice_correct(response: str) -> None:
    assert grade_mathvista(response, ANGLES).correct


@pytest.mark.parametrize(
    "response",
    [
        "B",
        "(D)",
        "The answer is 140°.",
        "The answer is E.",  # not an option: nearest choice to "E" is the first one
        "<think>The answer is C.</think>",
        "I cannot tell.",
        "",
    ],
)
def test_multi_choice_wrong(response: str) -> None:
    assert not grade_mathvista(response, ANGLES).correct


def test_choice_texts_that_look_like_letters() -> None:
    record = {**ANGLES, "choices": ["(c)", "(a)", "(e)", "(d)", "(b)"], "answer": "(b)"}
    assert grade_mathvista("E", record).correct
    assert grade_mathvista("The answer is (b).", record).correct
    assert not grade_mathvista("B", record).correct


def test_official_normalization() -> None:
    assert normalize_extracted_answer("(B) 140°", ANGLES) == "140°"
    assert normalize_extracted_answer("D", ANGLES) == "150°"
    assert normalize_extracted_answer("136", ANGLES) == "135°"
    assert normalize_extracted_answer("3.7", free_form("4", "integer")) == "3"
    assert normalize_extracted_answer("x", free_form("4", "integer")) is None
    assert normalize_extracted_answer("1.256", free_form("1.26", "float", 2)) == "1.26"
    assert normalize_extracted_answer("1.25", free_form("1.3", "float", 1)) == "1.2"  # Python's round-half-even
    assert normalize_extracted_answer("[1,2.5]", free_form("[1, 2.5]", "list")) == "[1, 2.5]"
    assert normalize_extracted_answer(None, ANGLES) is None
    assert levenshtein("kitten", "sitting") == 3


@pytest.mark.parametrize(
    ("response", "correct"),
    [
        ("The answer is 12.", True),
        ("\\boxed{12}", True),
        ("There are 12 apples in the picture.", True),  # the last number
        ("I count 3 rows of 4, so 12", True),
        ("The answer is 12.0", True),
        ("The answer is \\frac{24}{2}", True),
        ("The answer is 1,200", False),
        ("The answer is 13.", False),
        ("There are 12 apples, and 13 pears.", False),
        ("no idea", False),
    ],
)
def test_integer(response: str, correct: bool) -> None:
    assert grade_mathvista(response, free_form("12", "integer")).correct is correct


def test_integer_with_thousands_separators() -> None:
    assert grade_mathvista("The answer is 1,200.", free_form("1200", "integer")).correct


@pytest.mark.parametrize(
    ("response", "answer", "precision", "correct"),
    [
        ("The answer is 1.2", "1.2", 1, True),
        ("The answer is 1.23", "1.2", 1, True),
        ("\\boxed{1.16}", "1.2", 1, True),
        ("The answer is 1.3", "1.2", 1, False),
        ("Luca needs $1.45 to buy both.", "1.45", 2, True),
        ("The answer is 1.449", "1.45", 2, True),
        ("The answer is 1.4", "1.45", 2, False),
        ("The answer is \\frac{3}{4}", "0.75", 2, True),
        ("The answer is -4.3.", "-4.3", 1, True),
        ("The answer is 4.3.", "-4.3", 1, False),
        ("The answer is 1.45", "1.45", None, True),  # no precision: the gold's decimals
    ],
)
def test_float(response: str, answer: str, precision: int | None, correct: bool) -> None:
    assert grade_mathvista(response, free_form(answer, "float", precision)).correct is correct


@pytest.mark.parametrize(
    ("response", "correct"),
    [
        ("The answer is [2014, 2016].", True),
        ("The peaks are [2014,2016]", True),
        ("\\boxed{[2014, 2016]}", True),
        ("The answer is [2014, 2015].", False),
        ("2014 and 2016", False),
    ],
)
def test_list(response: str, correct: bool) -> None:
    assert grade_mathvista(response, free_form("[2014, 2016]", "list")).correct is correct


def test_truncation_and_thinking() -> None:
    record = free_form("12", "integer")
    assert not grade_mathvista("<think>The answer is 12.</think>", record).correct
    cut = grade_mathvista("The answer is 12.", record, finish_reason="length")
    assert (cut.extracted, cut.correct, cut.truncated) == ("12", False, True)
    unclosed = grade_mathvista("The answer is 12.", record, think_opened_by_prompt=True)
    assert (unclosed.correct, unclosed.truncated) == (False, True)


def test_an_explicit_extractor_replaces_the_rules() -> None:
    record = free_form("12", "integer")
    assert grade_mathvista("twelve", record, extractor=lambda text, row: "12").correct
    assert extract_mathvista("twelve", record) is None


def test_judge_prompt() -> None:
    query = "Hint: Please answer the question requiring an integer answer.\nQuestion: How many cars?"
    prompt = build_extraction_prompt(query, "  I see 7 cars.  ")
    assert prompt.endswith(f"{query}\n\nModel response: I see 7 cars.\n\nExtracted answer: ")
    assert prompt.count("Extracted answer:") == 5  # four worked examples, then the one to answer
    for example in ("integer", "two decimal places", "Python list", "option letter"):
        assert example in prompt


def test_testmini_golds_grade_themselves_correct() -> None:
    path = SHARED_DATA / "mathvista" / "testmini.jsonl"
    if not path.is_file():
        pytest.skip(f"MathVista data not found at {path} (shared/data is absent)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def gold_response(row: dict) -> str:
        if row["question_type"] == "multi_choice":
            return option_letters(row["choices"])[row["choices"].index(row["answer"])]
        return f"The answer is {row['answer']}"

    correct = sum(grade_mathvista(gold_response(row), row).correct for row in rows)
    assert correct >= 0.99 * len(rows)
    by_text = sum(grade_mathvista(f"The answer is {row['answer']}", row).correct for row in rows)
    assert by_text >= 0.99 * len(rows)
