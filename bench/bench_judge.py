"""The chain-of-thought judge against the rule-based grader: agreement with known labels, and the judge's cost.

Cases: the grader's own test cases (tests/test_grading.py: pairs of equal and of different forms, labelled), and
MATH-500 problems with integer or fraction gold answers, each answered in several forms whose label is known — the
gold itself, a rewritten equal form ("1/2", "twelve"), and a wrong value. Both verifiers grade
every case; the report gives each one's accuracy against the labels, their agreement, the judge's unparsable
("unknown") verdicts and its tokens and seconds per verdict. Default judge: ``k15 serve`` on the embedded default
started here; ``--endpoint URL --judge-model NAME`` uses any OpenAI-compatible judge.

    python bench/bench_judge.py --data-dir ../shared/data --cases 60 --out docs/bench-judge.md
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

from k15.evalsuite.tasks import get_task
from k15.grading import grade
from k15.grading.judge import CoTJudge, JudgeConfig
from k15.net import free_port

ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def words(n: int) -> str:
    """``n`` (0–999) in English words."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    rest = n % 100
    return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + words(rest))


def gold_value(gold: str) -> Fraction | None:
    text = gold.strip().replace("$", "")
    if re.fullmatch(r"-?\d+", text):
        return Fraction(int(text))
    match = re.fullmatch(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}", text)
    return Fraction(int(match.group(1)), int(match.group(2))) if match else None


def cases(data_dir: str | None, count: int) -> list[tuple[str, str, str, bool, str]]:
    """(problem, gold, answer text, label, form) for the first problems with a simple gold answer."""
    found: list[tuple[str, str, str, bool, str]] = []
    for item in get_task("math500").items(Path(data_dir) if data_dir else None):
        gold = str(item.record["answer"])
        value = gold_value(gold)
        if value is None or not 0 <= value < 1000:
            continue
        problem = str(item.record["problem"])
        if value.denominator == 1:
            n = int(value)
            forms = [(f"The answer is $\\boxed{{{gold}}}$.", True, "gold"),
                     (f"So the result is {words(n)}.", True, "words"),
                     (f"The answer is $\\boxed{{{n + 1}}}$.", False, "wrong")]  # fmt: skip
        else:
            a, b = value.numerator, value.denominator
            forms = [(f"The answer is $\\boxed{{{gold}}}$.", True, "gold"),
                     (f"The answer is {a}/{b}.", True, "slash"),
                     (f"That is {words(a)} over {words(b)}.", True, "words"),
                     (f"The answer is $\\boxed{{\\frac{{{a + 1}}}{{{b}}}}}$.", False, "wrong")]  # fmt: skip
        found += [(problem, gold, text, label, form) for text, label, form in forms]
        if len(found) >= count:
            return found[:count]
    return found


def grader_test_cases() -> list[tuple[str, str, str, bool, str]]:
    """The equal / different answer pairs of tests/test_grading.py, with no problem text."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.test_grading import DIFFERENT_FORMS, EQUIVALENT_FORMS

    sets = ((EQUIVALENT_FORMS, True, "tests: equal"), (DIFFERENT_FORMS, False, "tests: different"))
    return [("(not given)", gold, f"The answer is ${answer}$.", label, form)
            for pairs, label, form in sets for gold, answer in pairs]  # fmt: skip


def serve_default() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    exe = Path(sys.executable).parent / "k15"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--set", "engine.enforce_eager=true",
                             "--set", "engine.max_model_len=4096"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    for line in proc.stdout:  # type: ignore[union-attr]
        if "ready — OpenAI base URL" in line:
            return proc, f"http://127.0.0.1:{port}/v1"
    raise RuntimeError("k15 serve did not start")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--endpoint", help="an OpenAI-compatible judge (default: k15 serve on the embedded default)")
    args.add_argument("--judge-model", default="k15-short", help="its model name (default: k15-short)")
    args.add_argument("--data-dir", default=os.environ.get("K15_DATA_DIR"))
    args.add_argument("--cases", type=int, default=60)
    args.add_argument("--max-tokens", type=int, default=512)
    args.add_argument("--out", type=Path)
    opts = args.parse_args()
    server, endpoint = (None, opts.endpoint) if opts.endpoint else serve_default()
    try:
        judge = CoTJudge(JudgeConfig(endpoint=endpoint, model=opts.judge_model, max_tokens=opts.max_tokens))
        todo = grader_test_cases() + cases(opts.data_dir, opts.cases)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            verdicts = list(pool.map(lambda c: judge(c[0], c[1], c[2]), todo))
        wall = time.monotonic() - started
    finally:
        if server is not None:
            server.terminate()
            server.wait(120)
    rules = [grade("math500", f"</think>{text}", {"answer": gold}).correct for _, gold, text, _, _ in todo]
    labels = [label for *_, label, _ in todo]
    judged = [v.label == "correct" for v in verdicts]
    n = len(todo)
    unknown = sum(v.label == "unknown" for v in verdicts)
    by_form: dict[str, list[tuple[bool, bool]]] = {}
    for (*_, label, form), r, j in zip(todo, rules, judged, strict=True):
        by_form.setdefault(form, []).append((r == label, j == label))
    lines = [
        f"# The CoT judge against the rules ({n} cases, judge {opts.judge_model} at {endpoint})", "",
        f"- rules agree with the labels: {sum(r == lab for r, lab in zip(rules, labels, strict=True))}/{n}",
        f"- judge agrees with the labels: {sum(j == lab for j, lab in zip(judged, labels, strict=True))}/{n} "
        f"(unknown verdicts: {unknown}, counted wrong)",
        f"- judge agrees with the rules: {sum(j == r for j, r in zip(judged, rules, strict=True))}/{n}",
        f"- judge cost: {sum(v.completion_tokens for v in verdicts) / n:.0f} tokens and "
        f"{sum(v.seconds for v in verdicts) / n:.1f} s per verdict (8 concurrent; {wall:.0f} s wall in all)", "",
        "| form | cases | rules right | judge right |", "|---|---|---|---|",
    ]  # fmt: skip
    for form, rows in by_form.items():
        lines.append(f"| {form} | {len(rows)} | {sum(r for r, _ in rows)} | {sum(j for _, j in rows)} |")
    report = "\n".join(lines)
    print(report)
    if opts.out:
        opts.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
