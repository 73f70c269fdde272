"""Run one RL iteration in this process and check what it did (run by tests/test_train.py as a subprocess).

Prints one JSON line: how much the weights moved, and whether vLLM's log-probs of a fixed continuation, after the
in-memory sync, match the trainer's model with the new weights (and differ from the old ones). With ``--code``
(a code prompt set), also the sandbox runs the iteration's rewards made, and the trainer's reward of a right and a
wrong solution (each row's ``solution``) sent through the same path.
"""

import json
import sys

import torch

from k15.config import load_config
from k15.train.rl.trainer import RLConfig, RLTrainer
from k15.train.runtime.distributed import close_distributed


def vllm_logprobs(trainer: RLTrainer, ids: list[int]) -> list[float]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    out = trainer.rollout.llm.generate(
        [TokensPrompt(prompt_token_ids=ids)], SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False
    )[0]
    return [next(iter(p.values())).logprob for p in out.prompt_logprobs[1:]]


def trainer_logprobs(trainer: RLTrainer, ids: list[int]) -> list[float]:
    from k15.train.runtime.logprobs import token_logprobs

    with torch.no_grad():
        logp = token_logprobs(trainer.engine.module, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
    return logp[0].tolist()


def count_sandbox_runs(trainer: RLTrainer) -> list[str]:
    """The status of every program the trainer's verifier runs from now on."""
    sandbox = trainer.verifier.sandbox()
    statuses: list[str] = []
    run = sandbox.run

    def counted(program: str):
        result = run(program)
        statuses.append(result.status)
        return result

    sandbox.run = counted  # type: ignore[method-assign]
    return statuses


def rewarded(trainer: RLTrainer, answer: str) -> bool:
    """The trainer's verdict on a finished response (thinking, then ``answer``) to problem 0."""
    from k15.train.rl.partial_rollouts import Trajectory

    ids = trainer.tokenizer(f"Let me write it.</think>{answer}", add_special_tokens=False)["input_ids"]
    trajectory = Trajectory(0, 0, trainer.prompt_ids(0), segments=[ids], finished=True)
    trainer.verify([trajectory])
    return trajectory.correct


def main(config_file: str, code: bool = False) -> None:
    trainer = RLTrainer(load_config(RLConfig, config_file, []))
    statuses = count_sandbox_runs(trainer) if code else []
    probe = trainer.prompt_ids(0) + trainer.tokenizer("Step 1: 2 + 3 = 5", add_special_tokens=False)["input_ids"]
    before = {k: v.detach().float().clone() for k, v in trainer.engine.module.state_dict().items()}
    vllm_before = vllm_logprobs(trainer, probe)
    metrics = trainer.train_step(0)
    solution = trainer.problems[0].record.get("solution", "")
    after = trainer.engine.module.state_dict()
    moved = max((after[k].float() - before[k]).abs().max().item() for k in before)
    vllm_after, hf_after = vllm_logprobs(trainer, probe), trainer_logprobs(trainer, probe)
    print(json.dumps({
        "moved": moved,
        "vllm_vs_trainer": max(abs(a - b) for a, b in zip(vllm_after, hf_after, strict=True)),
        "vllm_change": max(abs(a - b) for a, b in zip(vllm_after, vllm_before, strict=True)),
        "metrics": metrics,
        **({"sandbox_runs": statuses, "right_rewarded": rewarded(trainer, f"```python\n{solution}\n```"),
            "wrong_rewarded": rewarded(trainer, "```python\ndef f():\n    return None\n```")} if code else {}),
    }))  # fmt: skip
    trainer.logger.close()
    trainer.close()
    close_distributed()


if __name__ == "__main__":
    main(sys.argv[1], code="--code" in sys.argv[2:])
