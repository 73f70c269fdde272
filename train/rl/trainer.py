"""Kimi k1.5 long-CoT RL (§2.3–2.6): online policy mirror descent on DeepSpeed, rollouts from vLLM.

One iteration i, on every rank:
  1. sample prompts (curriculum + prioritized, §2.3.4); this rank takes its share;
  2. roll out k responses per prompt with vLLM from π_θi (a prompt's images as multimodal inputs), continuing
     unfinished partial rollouts (§2.6.2);
  3. reward: the shared grader (:mod:`k15.grading`) plus the length reward (§2.3.3) once the warm-up is over;
  4. ``epochs × mini_batches`` optimizer steps on paper Eq. 3 (:mod:`k15.train.rl.loss`), log π_θi(y|x) fixed;
  5. push the new weights π_θi+1 into the vLLM engine in memory; log metrics; save the resumable state.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from k15.checkpoint import Kind
from k15.config import Config
from k15.images import open_image
from k15.precision import describe
from k15.train.data.formats import Problem, load_problems
from k15.train.rl.loss import advantages, mirror_descent_terms
from k15.train.rl.partial_rollouts import ReplayBuffer, Trajectory, degenerate_repetition
from k15.train.rl.rewards import RewardConfig, Verifier, length_rewards
from k15.train.rl.rollout import Images, RolloutConfig, RolloutEngine, prompt_ids
from k15.train.rl.sampling import ProblemSampler
from k15.train.runtime.deepspeed_setup import full_state_dict, reset_optimizer_state
from k15.train.runtime.distributed import all_gather_objects, barrier
from k15.train.runtime.trainer import Trainer, TrainerConfig
from k15.train.runtime.vision import check_images


class PromptDataConfig(Config):
    """A JSONL prompt set: each row has a problem and a verifiable answer (and optionally a difficulty)."""

    path: str
    grader: str = Field("math", description="the grader (k15.grading.GRADERS key) of rows that name none")
    prompt_template: str | None = Field(None, description="with {problem}; None: the grader's (math or code)")
    problem_field: str = "problem"
    answer_field: str = "answer"
    min_difficulty: float | None = Field(None, description="keep rows with difficulty ≥ this (e.g. a level)")
    max_difficulty: float | None = Field(None, description="keep rows with difficulty ≤ this")
    limit: int | None = Field(None, ge=1, description="the first N rows kept")

    def load(self) -> list[Problem]:
        """The prompt set: bad rows reported and skipped, then the difficulty band and the limit applied."""
        problems = load_problems(self.path, self.grader, self.prompt_template, self.problem_field, self.answer_field)
        if self.min_difficulty is not None or self.max_difficulty is not None:
            low, high = self.min_difficulty, self.max_difficulty
            problems = [p for p in problems if p.difficulty is not None and (low is None or p.difficulty >= low)
                        and (high is None or p.difficulty <= high)]  # fmt: skip
            if not problems:
                raise ValueError(f"{self.path}: no row with a difficulty in [{low}, {high}]")
        return problems[: self.limit]


class LengthPenaltyConfig(Config):
    enabled: bool = True
    weight: float = Field(1.0, ge=0)
    warmup_iterations: int = Field(0, ge=0, description="iterations before the length reward is switched on")
    wrong_answers: bool = Field(
        True, description="penalise long wrong answers, min(0, λ) (the paper); false: only correct ones are ranked"
    )


class PromptSamplingConfig(Config):
    """Which prompts an iteration trains on (§2.3.4)."""

    curriculum: bool = True
    prioritized: bool = True
    curriculum_start: float = Field(0.3, gt=0, le=1)


class RLConfig(TrainerConfig):
    model: str | None = Field(None, description="the policy to start from (the warm-up SFT checkpoint)")
    data: PromptDataConfig
    name: str = "long-cot-rl"
    kind: Kind = Kind.long_cot
    method: str = "rl"
    iterations: int = Field(50, ge=1)
    prompts_per_iteration: int = Field(8, ge=1)
    rollout: RolloutConfig = RolloutConfig()
    tau: float = Field(0.05, gt=0, description="τ of the KL term (paper Eq. 2–3)")
    epochs: int = Field(1, ge=1)
    mini_batches: int = Field(1, ge=1, description="optimizer steps per epoch")
    reset_optimizer: bool = True
    reward: RewardConfig = Field(default_factory=RewardConfig, description="the verifier: rules, sandbox, judge")
    length_penalty: LengthPenaltyConfig = LengthPenaltyConfig()
    prompt_sampling: PromptSamplingConfig = PromptSamplingConfig()
    save_every: int = Field(10, ge=1, description="export a Hugging Face checkpoint every N iterations")
    state_every: int = Field(1, ge=1, description="save the resumable state every N iterations")

    @model_validator(mode="after")
    def _fits(self) -> RLConfig:
        if self.rollout.max_tokens >= self.rollout.engine.max_model_len:
            raise ValueError(f"rollout.max_tokens ({self.rollout.max_tokens}) must be below "
                             f"rollout.engine.max_model_len ({self.rollout.engine.max_model_len})")  # fmt: skip
        return self


class RLTrainer(Trainer):
    """One :meth:`train_step` is one RL iteration (above)."""

    cfg: RLConfig
    unit = "iteration"

    def __init__(self, config: RLConfig) -> None:
        self.problems: list[Problem] = config.data.load()  # bad data fails here, before any engine starts
        self._prompt_cache: dict[int, tuple[list[int], list[int]]] = {}
        self.verifier = Verifier(config.reward)
        super().__init__(config)
        banned = self.vision.placeholder_ids if self.vision is not None else ()
        self.rollout = RolloutEngine(self.engine_model_path, config.rollout.engine, banned)
        if self.resumed:
            self.rollout.push(full_state_dict(self.engine))

    def precision_note(self) -> str:
        return f"{super().precision_note()}; rollouts in {describe(self.cfg.rollout.engine.dtype)}"

    def prepare(self, model: Any, model_path: Path) -> None:
        image_rows = sum(bool(p.images) for p in self.problems)
        check_images(image_rows, self.cfg.data.path, str(model_path), self.vision is not None)
        self.engine_model_path = model_path
        if model.get_input_embeddings().num_embeddings != _vocab_size(model_path):
            self.engine_model_path = self.run_dir / "init"  # vLLM must see the same vocabulary as the trainer
            if self.rank == 0:
                model.save_pretrained(self.engine_model_path)
                (self.vision.processor if self.vision is not None else self.tokenizer).save_pretrained(
                    self.engine_model_path
                )
            barrier()

    def restore(self, shared: dict[str, Any] | None, own: dict[str, Any] | None) -> None:
        s = self.cfg.prompt_sampling
        difficulty = [p.difficulty if p.difficulty is not None else 0.0 for p in self.problems]
        self.sampler = ProblemSampler(difficulty, s.curriculum, s.prioritized, s.curriculum_start, self.cfg.seed)
        self.buffer = ReplayBuffer()
        if shared is not None and own is not None:
            self.sampler.load_state_dict(shared["sampler"])
            self.buffer.load_state_dict(own["buffer"])

    def shared_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def own_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def total_steps(self) -> int:
        return self.cfg.iterations

    def after_step(self, metrics: dict[str, float]) -> None:
        if self.step % self.cfg.save_every == 0 and self.step < self.cfg.iterations:
            self.export(self.run_dir / "checkpoints" / f"iter-{self.step:06d}", metrics)

    def close(self) -> None:
        self.rollout.close()
        self.verifier.close()

    # -- rollouts and rewards ------------------------------------------------------------------------------------

    def prompts(self, problem: int) -> tuple[list[int], list[int]]:
        """The problem's prompt as the engine continues from it and as the trainer scores it: the same ids for
        text; for a prompt with images, one placeholder per image and the placeholders expanded
        (:meth:`VisionInputs.prompt`)."""
        if problem not in self._prompt_cache:
            p = self.problems[problem]
            if p.images and self.vision is not None:
                self._prompt_cache[problem] = self.vision.prompt(p.text, p.images)
            else:
                ids = prompt_ids(self.tokenizer, p.text)
                self._prompt_cache[problem] = (ids, ids)
        return self._prompt_cache[problem]

    def prompt_ids(self, problem: int) -> list[int]:
        return self.prompts(problem)[0]

    def image_inputs(self, problem: int) -> Images | None:
        """The problem's images for the engine, or None for a text prompt."""
        references = self.problems[problem].images
        if not references:
            return None
        engine_ids, model_ids = self.prompts(problem)
        return Images([open_image(r) for r in references], len(model_ids) - len(engine_ids))

    def _seed(self, iteration: int, t: Trajectory) -> int:
        return (self.cfg.seed * 1_000_003 + iteration * 7_919 + t.round * 131 + t.problem * 17 + t.sample) % 2**31

    def roll_out(self, iteration: int, problems: list[int]) -> tuple[list[Trajectory], int]:
        """Generate this iteration's segments; returns the trajectories touched and the tokens generated."""
        r = self.cfg.rollout
        active = self.buffer.take_unfinished()
        active += [Trajectory(p, j, self.prompt_ids(p), round=iteration) for p in problems for j in range(r.k)]
        if not active:
            return [], 0
        budgets = [min(r.segment_tokens or r.max_tokens, r.max_tokens - len(t.response_ids)) for t in active]
        images = {p: self.image_inputs(p) for p in {t.problem for t in active}}
        segments = self.rollout.generate([t.context_ids() for t in active], budgets, r.temperature, r.top_p,
                                         [self._seed(iteration, t) for t in active],
                                         [images[t.problem] for t in active])  # fmt: skip
        for t, segment in zip(active, segments, strict=True):
            t.extend(segment.token_ids, iteration)
            length = len(t.response_ids)
            extra = images[t.problem].extra_tokens if images[t.problem] else 0
            if r.repetition_stop and degenerate_repetition(t.response_ids):
                t.finished = t.repeated = True
            elif segment.finish_reason == "stop":
                t.finished = True
            elif length >= r.max_tokens or len(t.context_ids()) + extra >= self.rollout.max_model_len:
                t.finished = t.truncated = True
            self.buffer.add(t)
        self.verify([t for t in active if t.finished])
        return active, sum(len(s.token_ids) for s in segments)

    def verify(self, finished: list[Trajectory]) -> None:
        """Reward finished trajectories with the shared verifier (truncated or looping answers are wrong); code is
        run in the sandbox and judged answers asked for, several at once."""
        jobs = [(self.problems[t.problem], self.tokenizer.decode(t.response_ids, skip_special_tokens=True),
                 "length" if t.truncated or t.repeated else "stop") for t in finished]  # fmt: skip
        for t, verdict in zip(finished, self.verifier.many(jobs), strict=True):
            t.correct = verdict.correct and not t.repeated
            t.reward = float(t.correct) - (self.cfg.rollout.repetition_penalty if t.repeated else 0.0)

    def group_rewards(self, group: list[Trajectory], iteration: int) -> list[tuple[float, float]]:
        """(total reward, length reward) per sample: the verifier reward plus the weighted length reward."""
        lp = self.cfg.length_penalty
        on = lp.enabled and iteration >= lp.warmup_iterations
        lengths = length_rewards([len(t.response_ids) for t in group], [t.correct for t in group], lp.wrong_answers)
        return [(t.reward + lp.weight * lr * on, lp.weight * lr * on) for t, lr in zip(group, lengths, strict=True)]

    # -- the policy update ---------------------------------------------------------------------------------------

    def _forward(self, model: Any, batch: list[dict[str, Any]], with_entropy: bool = False):
        """Log π(y|x) of the policy the rollouts sampled: the model at the rollout temperature."""
        return self.logprobs(model, [(s["ids"], s["mask"]) for s in batch], with_entropy,
                             self.cfg.rollout.temperature, [s["images"] for s in batch])  # fmt: skip

    def update(self, samples: list[dict[str, Any]]) -> dict[str, float]:
        """Paper Eq. 3 steps on this iteration's samples; returns summed statistics for logging.

        log π_θi(y|x) is needed for every sample, fixed for the iteration. Until the first optimizer step the policy
        is π_θi, so the first mini-batch of the first epoch takes it from its own training forward (detached: its
        log-ratio is 0, as Eq. 3 has it at θ = θi); a no-grad pass scores only the other samples beforehand. With one
        mini-batch and one epoch (the default) there is no extra pass, as in TRL's GRPO with one iteration."""
        cfg = self.cfg
        sums = {"sq_log_ratio": 0.0, "entropy_x_tokens": 0.0, "tokens": 0.0, "policy_term": 0.0, "grad_norm": 0.0,
                "steps": 0.0}  # fmt: skip
        rng = np.random.default_rng(cfg.seed + self.step)
        plan = [self.mini_batches([samples[j] for j in rng.permutation(len(samples))], cfg.mini_batches, _tokens)
                for _ in range(cfg.epochs)]  # fmt: skip
        first = {id(s) for batch in plan[0][0] for s in batch}
        started = time.perf_counter()
        self.engine.module.eval()
        with torch.no_grad():
            for batch in self.micro_batches([s for s in samples if id(s) not in first], _tokens):
                old, entropy, tokens = self._forward(self.engine.module, batch, with_entropy=True)
                for s, value in zip(batch, old.tolist(), strict=False):
                    s["old_logp"] = value
                if batch:
                    self._add_entropy(sums, entropy, tokens)
        logprob_s = time.perf_counter() - started
        started = time.perf_counter()
        self.engine.module.train()
        total = max(1, sum(all_gather_objects(len(samples))))
        for epoch, minis in enumerate(plan):
            for index, mini in enumerate(minis):
                on_policy = epoch == 0 and index == 0  # π_θ is still π_θi
                size = max(1, sum(all_gather_objects(sum(len(b) for b in mini)))) if cfg.mini_batches > 1 else total
                for m, batch in enumerate(mini):
                    self.engine.set_gradient_accumulation_boundary(m == len(mini) - 1)
                    logp, entropy, tokens = self._forward(self.engine, batch, with_entropy=on_policy)
                    if on_policy:
                        old = logp.detach()
                        for s, value in zip(batch, old.tolist(), strict=False):
                            s["old_logp"] = value  # for the later epochs
                        if batch:
                            self._add_entropy(sums, entropy, tokens)
                    else:
                        old = torch.tensor([s["old_logp"] for s in batch], dtype=logp.dtype, device=logp.device)
                    adv = torch.tensor([s["advantage"] for s in batch], dtype=logp.dtype, device=logp.device)
                    terms = mirror_descent_terms(logp, old, adv, cfg.tau) if batch else logp * 0.0
                    self.backward(terms.sum(), size)  # the mean over all ranks' samples
                    if batch:
                        sums["sq_log_ratio"] += float(((logp.detach() - old) ** 2).sum()) / cfg.epochs
                        sums["policy_term"] += float(-(adv * logp.detach()).sum()) / cfg.epochs
                    self.optimizer_step()  # the optimizer steps only at the boundary set above
                sums["grad_norm"] += self.grad_norm()
                sums["steps"] += 1
        sums["train_tokens"] = float(sum(len(s["ids"]) for s in samples)) * cfg.epochs
        sums["train_s"] = time.perf_counter() - started
        sums["logprob_s"] = logprob_s
        return sums

    @staticmethod
    def _add_entropy(sums: dict[str, float], entropy: Any, tokens: Any) -> None:
        """Accumulate the entropy of π_θi over response tokens (token-weighted) for the iteration's metric."""
        sums["entropy_x_tokens"] += float(entropy) * float(tokens)
        sums["tokens"] += float(tokens)

    # -- the loop ------------------------------------------------------------------------------------------------

    def train_step(self, i: int) -> dict[str, float]:
        cfg = self.cfg
        began = time.perf_counter()
        if cfg.reset_optimizer:
            reset_optimizer_state(self.engine)
        problems = self.sampler.sample(cfg.prompts_per_iteration, progress=i / cfg.iterations)
        started = time.perf_counter()
        _, generated = self.roll_out(i, problems[self.rank :: self.world])
        rollout_s = time.perf_counter() - started
        groups = self.buffer.pop_complete_groups(cfg.rollout.k)
        for stats in all_gather_objects([(g[0].problem, [float(t.correct) for t in g]) for g in groups]):
            for problem, flags in stats:
                self.sampler.update(problem, flags)
        finished = [(t, reward, length) for group in groups
                    for t, (reward, length) in zip(group, self.group_rewards(group, i), strict=True)]  # fmt: skip
        group_ids = torch.tensor([g for g, group in enumerate(groups) for _ in group], dtype=torch.long)
        rewards = torch.tensor([reward for _, reward, _ in finished], dtype=torch.float64)
        advantage = advantages(rewards, group_ids).tolist() if finished else []  # r − r̄ over each prompt's k samples
        samples = []
        for (t, _, _), adv in zip(finished, advantage, strict=True):
            prompt = self.prompts(t.problem)[1]  # as the trainer scores it: a prompt's images expanded
            mask = [0] * len(prompt) + t.loss_mask(i)
            if any(mask):  # only the current policy's segment trains; older ones were context
                samples.append({"ids": prompt + t.response_ids, "mask": mask, "advantage": adv,
                                "images": self.problems[t.problem].images})  # fmt: skip
        stats = self.update(samples)
        started = time.perf_counter()
        sync_s = self.rollout.push(full_state_dict(self.engine))
        sync_s = max(sync_s, time.perf_counter() - started)
        local = {
            "finished": len(finished), "correct": sum(t.correct for t, _, _ in finished),
            "reward": sum(r for _, r, _ in finished), "length_reward": sum(lr for _, _, lr in finished),
            "response_len": sum(len(t.response_ids) for t, _, _ in finished),
            "response_len_max": max((len(t.response_ids) for t, _, _ in finished), default=0),
            "truncated": sum(t.truncated for t, _, _ in finished), "repeated": sum(t.repeated for t, _, _ in finished),
            "samples": len(samples), "generated": generated, "rollout_s": rollout_s, "sync_s": sync_s,
            "pending": len(self.buffer), **stats,
        }  # fmt: skip
        return self._combine(all_gather_objects(local), time.perf_counter() - began)

    @staticmethod
    def _combine(ranks: list[dict[str, float]], iteration_s: float) -> dict[str, float]:
        total = {k: sum(r[k] for r in ranks) for k in ranks[0]}
        slowest = {k: max(r[k] for r in ranks) for k in ("rollout_s", "sync_s", "train_s", "logprob_s")}
        n = max(total["finished"], 1)
        return {
            "reward": total["reward"] / n,
            "accuracy": total["correct"] / n,
            "length_reward": total["length_reward"] / n,
            "response_len_mean": total["response_len"] / n,
            "response_len_max": max(r["response_len_max"] for r in ranks),
            "truncated_frac": total["truncated"] / n,
            "repeated_frac": total["repeated"] / n,
            "sq_log_ratio": total["sq_log_ratio"] / max(total["samples"], 1),
            "policy_term": total["policy_term"] / max(total["samples"], 1),
            "entropy": total["entropy_x_tokens"] / max(total["tokens"], 1),
            "grad_norm": total["grad_norm"] / max(total["steps"], 1),
            "samples_trained": total["samples"],
            "trajectories_pending": total["pending"],
            "rollout_tokens_per_s": total["generated"] / max(slowest["rollout_s"], 1e-9),
            "train_tokens_per_s": total["train_tokens"] / max(slowest["train_s"], 1e-9),
            "rollout_s": slowest["rollout_s"],
            "logprob_s": slowest["logprob_s"],
            "train_s": slowest["train_s"],
            "sync_s": slowest["sync_s"],
            "iteration_s": iteration_s,
        }


def _tokens(sample: dict[str, Any]) -> int:
    return len(sample["ids"])


def _vocab_size(path: Path) -> int:
    """The checkpoint's vocabulary (a vision-language model's: its text model's)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path).get_text_config().vocab_size)
