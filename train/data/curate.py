"""``k15 data curate``: prompt-set curation as in Kimi k1.5 §2.1.

* Formats that cannot be verified reliably are dropped by rules (:func:`format_rule`, no server needed):
  multiple choice, true/false and yes/no, proofs, and answers that are empty or prose.
* Easy-to-hack problems are dropped: the model is asked for the final answer alone, with thinking disabled
  (``chat_template_kwargs: {"enable_thinking": false}``), ``hack_tries`` times; one correct answer drops the item.
* The rest get a difficulty from the model itself: k samples at high temperature, difficulty = 1 − pass rate.

Resumable like :mod:`k15.train.data.warmup` (OUTPUT plus ``OUTPUT.progress.jsonl``); the removal report covers
every finished problem and is also written to ``OUTPUT.report.json``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from k15.client import Completion
from k15.grading import grade
from k15.train.data.formats import Problem
from k15.train.data.warmup import Endpoint, Journal, Row, Sampler, is_correct, raise_errors, run_problems

RULES = ("multiple-choice", "true-false", "proof", "non-math-answer", "hackable")
DIRECT_PROMPT = "{problem}\n\nGive only the final answer within \\boxed{{}}, with no explanation."
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}

_OPTION = re.compile(r"\(([A-E])\)|^\s*([A-E])[.)]\s", re.MULTILINE)
_LETTER = re.compile(r"\(?[A-E]\)?")
_PROOF = re.compile(r"\b(?:prove|show that|demonstrate that)\b", re.IGNORECASE)
_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_WORD = re.compile(r"[A-Za-z]{3,}")
_MATHY = re.compile(r"[\d\\^=]")


def _plain(answer: str) -> str:
    """The answer without ``$`` signs, ``\\text{}``-like wrappers and a final period."""
    return _WRAPPER.sub(r"\1", answer).replace("$", "").strip().rstrip(".").strip()


def format_rule(problem: str, answer: str) -> str | None:
    """The rule that removes a problem whose answer format cannot be verified reliably, or None to keep it.

    ``multiple-choice``: options (A) and (B) (or lines "A." / "B)") in the problem, or a single letter A–E as the
    answer; ``true-false``: the answer is true, false, yes or no; ``proof``: the problem asks to prove or show
    something; ``non-math-answer``: the answer is empty or prose (four or more words, no digit or LaTeX).
    """
    plain = _plain(answer)
    options = {letter for match in _OPTION.findall(problem) for letter in match if letter}
    if {"A", "B"} <= options or _LETTER.fullmatch(plain):
        return "multiple-choice"
    if plain.lower() in {"true", "false", "yes", "no"}:
        return "true-false"
    if _PROOF.search(problem) or plain.lower() in {"proof", "qed"}:
        return "proof"
    if not plain or (len(_WORD.findall(plain)) >= 4 and not _MATHY.search(plain)):
        return "non-math-answer"
    return None


def direct_correct(problem: Problem, completion: Completion) -> bool:
    """Whether a no-thinking answer is right: the grader reads the content, or the reasoning field when a server
    put the whole reply there (a reasoning parser that never saw ``</think>``)."""
    text = completion.content if completion.content.strip() else completion.reasoning or ""
    return grade(problem.grader, text, problem.record, finish_reason=completion.finish_reason).correct


def report(finished: list[Row]) -> dict[str, Any]:
    """How many finished problems each rule removed, how many were kept and their mean pass rate."""
    removed = Counter(r["removed"] for r in finished if r.get("removed"))
    rates = [r["pass_rate"] for r in finished if not r.get("removed")]
    return {"problems": len(finished), "kept": len(rates), "removed": {rule: removed[rule] for rule in RULES},
            "mean_pass_rate": sum(rates) / len(rates) if rates else None}  # fmt: skip


def curate(
    problems: list[Problem], output: str | Path, endpoint: Endpoint, *, problem_field: str = "problem", k: int = 8,
    temperature: float = 1.0, max_tokens: int = 4096, hack_tries: int = 8, hack_max_tokens: int = 64,
) -> dict[str, Any]:  # fmt: skip
    """Curate ``problems`` (their original rows, by ``problem_field``, for the rules) into ``output``: kept rows gain
    ``difficulty`` (1 − pass rate) and ``pass_rate``. Prints the report, writes it beside the output, returns it."""
    journal = Journal(output)
    for problem in problems:
        rule = format_rule(str(problem.record[problem_field]), problem.record["answer"])
        if rule and problem.id not in journal.done:
            journal.record(problem.id, [], {"removed": rule})
    sampling = {"temperature": temperature, "max_tokens": max_tokens}
    direct = {"temperature": temperature, "max_tokens": hack_max_tokens, "extra_body": NO_THINKING}

    async def work(sampler: Sampler, problem: Problem) -> tuple[list[Row], Row]:
        if hack_tries:
            question = DIRECT_PROMPT.format(problem=problem.record[problem_field])
            tries = await sampler.sample([{"role": "user", "content": question}], direct, hack_tries)
            if hacked := sum(direct_correct(problem, c) for c in tries):
                return [], {"removed": "hackable", "direct_correct": hacked}
        samples = await sampler.sample([{"role": "user", "content": problem.text}], sampling, k)
        pass_rate = sum(is_correct(problem, c)[0] for c in samples) / k
        row = {**problem.record, "difficulty": round(1 - pass_rate, 4), "pass_rate": round(pass_rate, 4)}
        return [row], {"removed": None, "pass_rate": pass_rate}

    errors = run_problems(problems, journal, endpoint, work, "curate")
    result = report(journal.finished(problems))
    report_path = journal.output.with_name(journal.output.name + ".report.json")
    report_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    mean = "n/a" if result["mean_pass_rate"] is None else f"{result['mean_pass_rate']:.2f}"
    print(f"curate: {result['problems']} problems, {result['kept']} kept in {output} (mean pass rate {mean}); "
          f"removed: {', '.join(f'{rule} {n}' for rule, n in result['removed'].items())}")  # fmt: skip
    raise_errors(errors)
    return result
