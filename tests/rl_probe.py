"""Run one RL iteration in this process and check what it did (run by tests/test_train.py as a subprocess).

Prints one JSON line: how much the weights moved, and whether vLLM's log-probs of a fixed continuation, after the
in-memory sync, match the trainer's model with the new weights (and differ from the old ones).
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
        logp, _ = token_logprobs(trainer.engine.module, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
    return logp[0].tolist()


def main(config_file: str) -> None:
    trainer = RLTrainer(load_config(RLConfig, config_file, []))
    probe = trainer.prompt_ids(0) + trainer.tokenizer("Step 1: 2 + 3 = 5", add_special_tokens=False)["input_ids"]
    before = {k: v.detach().float().clone() for k, v in trainer.engine.module.state_dict().items()}
    vllm_before = vllm_logprobs(trainer, probe)
    metrics = trainer.train_step(0)
    after = trainer.engine.module.state_dict()
    moved = max((after[k].float() - before[k]).abs().max().item() for k in before)
    vllm_after, hf_after = vllm_logprobs(trainer, probe), trainer_logprobs(trainer, probe)
    print(json.dumps({
        "moved": moved,
        "vllm_vs_trainer": max(abs(a - b) for a, b in zip(vllm_after, hf_after, strict=True)),
        "vllm_change": max(abs(a - b) for a, b in zip(vllm_after, vllm_before, strict=True)),
        "metrics": metrics,
    }))  # fmt: skip
    trainer.logger.close()
    trainer.close()
    close_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
