"""Cross-check evalsuite against lm-eval on AIME 2024, same endpoint, same problems, in one run.

lm-eval runs its own ``aime24`` task (prompt, stop sequences, answer extraction and exact-match all its own)
through its ``local-chat-completions`` model; only the data source is pointed at the local copy. evalsuite runs
its ``aime24`` task. Both decode greedily with the same token limit and concurrency. Each harness's responses are
then re-graded by the other harness's grader, which separates prompt/generation differences from grading ones.
Prints scores, the agreement table and evalsuite ÷ lm-eval wall time (target ≤ 1.0).

    python bench/bench_eval.py --data-dir ../shared/data [--limit 30] [--max-tokens 512] [--concurrency 8]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import common
import lm_eval
from lm_eval.tasks import TaskManager
from lm_eval.tasks.aime import utils as lm_aime

from k15.config import load_config
from k15.evalsuite.runner import EvalConfig
from k15.evalsuite.runner import run as evalsuite_run
from k15.grading import grade
from k15.serve.config import ServeConfig
from k15.serve.stack import ServingStack

LM_TASK = "aime24_k15_local"
# The same gold answer written the ways models write it: which grader accepts which form.
ANSWER_FORMS = {
    "\\boxed{N}": "So the answer is \\boxed{{{n}}}.",
    "$N$": "Therefore the result is ${n}$.",
    "answer is N": "The answer is {n}.",
    "N in thinking only": "<think>It must be {n}.</think> I am not sure.",
    "\\boxed{N} then more text": "\\boxed{{{n}}} because 3 + 4 = 7 and 7 - 2 = 5.",
    "leading zeros": "The final answer is \\boxed{{0{n}}}.",
}


def grader_agreement(rows: list[dict]) -> list[str]:
    """Each gold answer in each form, graded by evalsuite and by lm-eval's aime24 process_results."""
    lines = ["| answer written as | evalsuite accepts | lm-eval accepts |", "|---|---:|---:|"]
    for label, form in ANSWER_FORMS.items():
        ours = theirs = 0
        for row in rows:
            response = form.format(n=row["answer"])
            ours += grade("aime24", response, row).correct
            theirs += lm_aime.process_results(row, [response])["exact_match"]
        lines.append(f"| {label} | {ours}/{len(rows)} | {theirs}/{len(rows)} |")
    return lines


def lm_eval_task(tmp: Path, data_dir: Path, max_tokens: int) -> Path:
    """lm-eval's own aime24 task, read from the local JSONL (its fields are lower-case there)."""
    builtin = Path(lm_aime.__file__).with_name("aime24.yaml")
    config = {
        "include": str(builtin), "task": LM_TASK, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"train": str(data_dir / "aime24" / "test.jsonl")}},
        "doc_to_text": "Question: {{problem}}\nAnswer:", "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>", "<|eot_id|>"], "do_sample": False,
                              "temperature": 0.0, "max_gen_toks": max_tokens},
    }  # fmt: skip
    (tmp / f"{LM_TASK}.yaml").write_text(json.dumps(config))  # JSON is YAML
    return tmp


def main() -> None:
    parser = common.parser(__doc__, None, model_default="default")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    serve_cfg = load_config(ServeConfig, None, [f"long={args.model}", f"short={args.model}", "port=0",
                                                "engine.enforce_eager=true", "engine.max_model_len=2048",
                                                "engine.gpu_memory_utilization=0.15"])  # fmt: skip
    with ServingStack(serve_cfg, log=lambda line: None) as stack, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_args = {"base_url": f"{stack.base_url}/chat/completions", "model": "k15-long",
                      "num_concurrent": args.concurrency, "tokenizer_backend": None, "tokenized_requests": False,
                      "max_gen_toks": args.max_tokens}  # fmt: skip
        start = time.perf_counter()
        lm = lm_eval.simple_evaluate(
            model="local-chat-completions", model_args=model_args, tasks=[LM_TASK], limit=args.limit,
            task_manager=TaskManager(include_path=str(lm_eval_task(tmp, args.data_dir, args.max_tokens))),
            apply_chat_template=True, log_samples=True,
        )  # fmt: skip
        lm_wall = time.perf_counter() - start

        cfg = EvalConfig(tasks=["aime24"], endpoint=stack.base_url, models=["k15-long"], limit=args.limit,
                         temperature=0.0, max_tokens_long=args.max_tokens, concurrency=args.concurrency,
                         data_dir=str(args.data_dir), out=str(tmp / "evalsuite"))  # fmt: skip
        start = time.perf_counter()
        out = evalsuite_run(cfg)
        ev_wall = time.perf_counter() - start
        ev_samples = [
            json.loads(line) for line in (out / "samples" / "aime24__k15-long.jsonl").read_text().splitlines()
        ]

    lm_samples = lm["samples"][LM_TASK]
    lm_own = sum(s["exact_match"] for s in lm_samples)
    lm_by_ours = sum(grade("aime24", s["resps"][0][0], s["doc"]).correct for s in lm_samples)
    ev_own = sum(r["correct"] for r in ev_samples)
    ev_by_lm = sum(lm_aime.process_results({"answer": r["gold"]}, [r["answer"]])["exact_match"] for r in ev_samples)
    lm_extracted = sum(grade("aime24", s["resps"][0][0], s["doc"]).extracted is not None for s in lm_samples)
    ev_extracted = sum(r["extracted"] is not None for r in ev_samples)
    ev_truncated = sum(r["truncated"] for r in ev_samples)
    n = len(ev_samples)
    lines = [
        "# evalsuite ÷ lm-eval on AIME 2024 (bench/bench_eval.py)",
        "",
        f"model {args.model} served by k15 serve; {n} problems; greedy; max {args.max_tokens} tokens; "
        f"{args.concurrency} concurrent requests in both harnesses.",
        "",
        "| harness (its prompt) | correct by its own grader | correct by the other grader | final answer found "
        "| wall time |",
        "|---|---:|---:|---:|---:|",
        f"| lm-eval aime24 (`Question: …\\nAnswer:`) | {lm_own}/{n} | {lm_by_ours}/{n} (evalsuite) "
        f"| {lm_extracted}/{n} | {lm_wall:.1f} s |",
        f"| evalsuite aime24 (`… put your final answer within \\boxed{{}}`) | {ev_own}/{n} | {ev_by_lm}/{n} (lm-eval) "
        f"| {ev_extracted}/{n} ({ev_truncated} truncated) | {ev_wall:.1f} s |",
        "",
        f"wall time ratio evalsuite ÷ lm-eval: {ev_wall / lm_wall:.2f} (target ≤ 1.0)",
        "",
        "## The graders alone: AIME 2024 gold answers written in common forms",
        "",
        *grader_agreement([json.loads(x) for x in (args.data_dir / "aime24" / "test.jsonl").read_text().splitlines()]),
    ]
    report = "\n".join(lines)
    common.emit(report, args.out)


if __name__ == "__main__":
    main()
