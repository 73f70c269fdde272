"""One RL iteration on image prompts in this process, and what it did (run by tests/test_vision_rl.py as a
subprocess; ``python tests/vision_rl_probe.py CONFIG`` measures the log-prob agreement by hand).

Prints one JSON line: the mean absolute difference per token between the log-probs vLLM reported for the tokens
it sampled (images as multimodal inputs) and the trainer's log-probs of the same tokens (the processor's pixel
inputs), before the iteration and after it (then from the new weights, synced in memory); how much the weights and
vLLM's scores moved; whether vLLM expanded the image placeholders as the trainer's processor does; and whether the
trainer's log-probs depend on the image.
"""

import json
import sys

import torch

from k15.config import load_config
from k15.images import open_image
from k15.train.rl.trainer import RLConfig, RLTrainer
from k15.train.runtime.distributed import close_distributed
from k15.train.runtime.logprobs import token_logprobs

Sample = tuple[int, list[int], list[float]]  # (problem, sampled tokens, their log-probs)


def vllm_samples(trainer: RLTrainer, problems: list[int], n: int, seed: int) -> list[Sample]:
    """``n`` samples per problem at temperature 1 from the rollout engine: (problem, tokens, vLLM's log-probs);
    checks that vLLM expanded each prompt's placeholders into the trainer's prompt ids."""
    from vllm import SamplingParams

    prompts, owners = [], []
    for p in problems:
        engine_ids, _ = trainer.prompts(p)
        pictures = [open_image(r) for r in trainer.problems[p].images]
        prompts += [{"prompt_token_ids": engine_ids, "multi_modal_data": {"image": pictures}}] * n
        owners += [p] * n
    params = [SamplingParams(temperature=1.0, max_tokens=12, seed=seed + j, logprobs=0, skip_special_tokens=False,
                             logit_bias=trainer.rollout.logit_bias) for j in range(len(prompts))]  # fmt: skip
    outputs = trainer.rollout.llm.generate(prompts, params, use_tqdm=False)
    samples = []
    for p, out in zip(owners, outputs, strict=True):
        assert list(out.prompt_token_ids) == trainer.prompts(p)[1], "vLLM expanded the placeholders differently"
        tokens = list(out.outputs[0].token_ids)
        samples.append((p, tokens, [lp[t].logprob for lp, t in zip(out.outputs[0].logprobs, tokens, strict=True)]))
    return samples


def trainer_logprobs(trainer: RLTrainer, problem: int, tokens: list[int], images: tuple[str, ...]) -> list[float]:
    """The trainer's log-probs of ``tokens`` after the problem's prompt, the model seeing ``images``."""
    ids = trainer.prompts(problem)[1] + tokens
    model = trainer.engine.module
    assert trainer.vision is not None
    pixels = trainer.vision.pixel_inputs([images], next(model.parameters()).dtype)
    with torch.no_grad():
        logp = token_logprobs(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), pixels)
    return logp[0, -len(tokens) :].tolist()


def agreement(trainer: RLTrainer, samples: list[Sample]) -> float:
    """Mean |vLLM − trainer| per sampled token."""
    diffs = [abs(a - b) for p, tokens, theirs in samples
             for a, b in zip(theirs, trainer_logprobs(trainer, p, tokens, trainer.problems[p].images), strict=True)]  # fmt: skip
    return sum(diffs) / len(diffs)


def main(config_file: str) -> None:
    trainer = RLTrainer(load_config(RLConfig, config_file, []))
    problems = list(range(min(4, len(trainer.problems))))
    before_samples = vllm_samples(trainer, problems, n=2, seed=1)
    before_diff = agreement(trainer, before_samples)
    p, tokens, _ = before_samples[0]
    other = next(q for q in range(len(trainer.problems)) if trainer.problems[q].images != trainer.problems[p].images)
    image_effect = max(abs(a - b) for a, b in zip(trainer_logprobs(trainer, p, tokens, trainer.problems[p].images),
                                                  trainer_logprobs(trainer, p, tokens, trainer.problems[other].images),
                                                  strict=True))  # fmt: skip
    start = {k: v.detach().float().clone() for k, v in trainer.engine.module.state_dict().items()}
    metrics = trainer.train_step(0)
    after = trainer.engine.module.state_dict()
    moved = {part: max((after[k].float() - start[k]).abs().max().item() for k in start if part in k)
             for part in ("vision_model", "text_model")}  # fmt: skip
    rescored = vllm_scores(trainer, before_samples)  # the same tokens, from vLLM's synced weights
    vllm_change = max(abs(a - b) for (_, _, old), new in zip(before_samples, rescored, strict=True)
                      for a, b in zip(old, new, strict=True))  # fmt: skip
    after_samples = vllm_samples(trainer, problems, n=2, seed=101)  # sampled from the new weights
    print(json.dumps({
        "before_diff": before_diff, "after_diff": agreement(trainer, after_samples),
        "tokens": sum(len(t) for _, t, _ in before_samples + after_samples),
        "image_effect": image_effect, "moved": moved, "vllm_change": vllm_change, "metrics": metrics,
    }))  # fmt: skip
    trainer.logger.close()
    trainer.close()
    close_distributed()


def vllm_scores(trainer: RLTrainer, samples: list[Sample]) -> list[list[float]]:
    """vLLM's log-probs of the tokens of earlier ``samples`` (as a prompt continuation) from its current weights."""
    from vllm import SamplingParams

    prompts = [{"prompt_token_ids": trainer.prompts(p)[0] + tokens,
                "multi_modal_data": {"image": [open_image(r) for r in trainer.problems[p].images]}}
               for p, tokens, _ in samples]  # fmt: skip
    outputs = trainer.rollout.llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
    scores = []
    for (_, tokens, _), out in zip(samples, outputs, strict=True):
        ids = list(out.prompt_token_ids)[-len(tokens) :]
        scores.append([entry[t].logprob for entry, t in zip(out.prompt_logprobs[-len(tokens) :], ids, strict=True)])
    return scores


if __name__ == "__main__":
    main(sys.argv[1])
