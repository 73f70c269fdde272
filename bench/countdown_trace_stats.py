"""What the Countdown warm-up traces look like before any training: tokens per level (the embedded default's
tokenizer), how often the search finds the target within its budget, and how much one problem's samples differ
in length (the spread that shortest rejection sampling and DPO can cut).

    python bench/countdown_trace_stats.py [--problems 160] [--samples 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

from k15.models import resolve_model
from k15.train.data.countdown import generate, trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=160)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None))
    tokens, found, spread = defaultdict(list), defaultdict(list), []
    for i, row in enumerate(generate(args.problems, seed=0)):
        lengths = []
        for sample in range(args.samples):
            text, ok = trace(row, seed=i * 1000 + sample)
            lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
            found[row["difficulty"]].append(ok)
        tokens[row["difficulty"]] += lengths
        spread.append(statistics.pstdev(lengths) / statistics.fmean(lengths))
    by_level = {level: {"mean_tokens": round(statistics.fmean(t)), "median_tokens": statistics.median(t),
                        "max_tokens": max(t), "found": round(sum(found[level]) / len(found[level]), 3)}
                for level, t in sorted(tokens.items())}  # fmt: skip
    print(json.dumps({"levels": by_level, "within_problem_cv": round(statistics.fmean(spread), 3)}, indent=2))


if __name__ == "__main__":
    main()
