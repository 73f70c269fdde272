"""The RL math of Kimi k1.5 against hand computation: loss (Eq. 3), length penalty (§2.3.3), samplers (§2.3.4)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch

from k15.train.data.formats import Problem
from k15.train.rl.loss import advantages, group_mean, mirror_descent_terms
from k15.train.rl.rewards import RewardConfig, Verifier, length_rewards
from k15.train.rl.sampling import ProblemSampler


def eq3_loss(
    logp: torch.Tensor, ref: torch.Tensor, rewards: torch.Tensor, groups: torch.Tensor, tau: float
) -> torch.Tensor:
    """The loss exactly as the RL trainer builds it: advantages r − r̄ per prompt, then the mean Eq. 3 term."""
    return mirror_descent_terms(logp, ref, advantages(rewards, groups), tau).mean()


def test_loss_matches_hand_computation() -> None:
    logp = torch.tensor([-2.0, -3.0, -1.0, -4.0])
    ref = torch.tensor([-2.5, -3.0, -1.5, -3.0])
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    # prompt 0: r̄ = 0.5 → advantages +0.5, −0.5; prompt 1: r̄ = 1 → advantages 0, 0
    terms = [-0.5 * -2.0 + 0.25 * 0.5**2, 0.5 * -3.0 + 0.25 * 0.0, 0.0 + 0.25 * 0.5**2, 0.0 + 0.25 * 1.0**2]
    assert advantages(rewards, groups).tolist() == [0.5, -0.5, 0.0, 0.0]
    assert eq3_loss(logp, ref, rewards, groups, tau).item() == pytest.approx(sum(terms) / 4)


def test_group_mean_is_the_per_prompt_baseline() -> None:
    values = torch.tensor([1.0, 0.0, 0.0, 3.0, 1.0])
    assert group_mean(values, torch.tensor([0, 0, 1, 1, 1])).tolist() == pytest.approx([0.5, 0.5, 4 / 3, 4 / 3, 4 / 3])


def test_gradient_matches_eq3_and_finite_differences_on_a_tiny_model() -> None:
    """∇L equals paper Eq. 3's gradient (negated, as a loss) and central finite differences of L."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(11, 8), torch.nn.Tanh(), torch.nn.Linear(8, 11)).double()
    responses = torch.randint(0, 11, (6, 5))
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.double)
    tau = 0.3

    def seq_logp() -> torch.Tensor:
        logits = model(responses[:, :-1])
        return torch.log_softmax(logits, -1).gather(-1, responses[:, 1:, None]).squeeze(-1).sum(-1)

    with torch.no_grad():
        ref = seq_logp() + 0.1 * torch.randn(6, dtype=torch.double)  # π_θi differs from π_θ a little
    loss = eq3_loss(seq_logp(), ref, rewards, groups, tau)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params)

    # Eq. 3 directly: (1/k)Σ[∇logπ·(r − r̄) − (τ/2)∇(logπ − logπ_ref)²], averaged over prompts; the loss is its negation.
    logp = seq_logp()
    baseline = torch.tensor([1 / 3] * 3 + [2 / 3] * 3, dtype=torch.double)
    eq3 = ((rewards - baseline) * logp - 0.5 * tau * (logp - ref) ** 2).mean()
    for g, e in zip(grads, torch.autograd.grad(-eq3, params), strict=True):
        torch.testing.assert_close(g, e)

    weight = params[1]  # finite differences on a few entries of the output layer
    for index in [(0, 0), (3, 5), (10, 7)]:
        eps = 1e-6
        with torch.no_grad():
            weight[index] += eps
            up = eq3_loss(seq_logp(), ref, rewards, groups, tau).item()
            weight[index] -= 2 * eps
            down = eq3_loss(seq_logp(), ref, rewards, groups, tau).item()
            weight[index] += eps
        assert grads[1][index].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_no_learning_signal_when_all_samples_agree() -> None:
    logp = torch.tensor([-2.0, -3.0], requires_grad=True)
    loss = eq3_loss(logp, logp.detach(), torch.tensor([1.0, 1.0]), torch.tensor([0, 0]), tau=1.0)
    (grad,) = torch.autograd.grad(loss, logp)
    assert grad.abs().max().item() == 0.0


@pytest.mark.parametrize(
    ("lengths", "correct", "expected"),
    [
        ([100, 100, 100], [True, False, True], [0.0, 0.0, 0.0]),  # all equal
        ([100, 200, 300], [False, False, False], [0.0, 0.0, -0.5]),  # all wrong: never positive
        ([100, 200, 300], [True, True, True], [0.5, 0.0, -0.5]),
        ([100, 150, 300, 200], [True, False, True, True], [0.5, 0.0, -0.5, 0.0]),  # mixed
        ([10, 30], [False, True], [0.0, -0.5]),
    ],
)
def test_length_rewards(lengths: list[int], correct: list[bool], expected: list[float]) -> None:
    assert length_rewards(lengths, correct) == pytest.approx(expected)


def test_length_rewards_can_leave_wrong_answers_alone() -> None:
    """The variant ranks only correct answers by length: a long wrong answer is no worse than a quick one."""
    lengths, correct = [100, 200, 300, 400], [True, False, True, False]
    assert length_rewards(lengths, correct) == pytest.approx([0.5, 0.0, -1 / 6, -0.5])
    assert length_rewards(lengths, correct, wrong_answers=False) == pytest.approx([0.5, 0.0, -1 / 6, 0.0])


def test_length_rewards_reject_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="2 lengths but 1"):
        length_rewards([1, 2], [True])


def test_task_reward_uses_the_evalsuite_grader_on_text_after_thinking() -> None:
    verifier = Verifier(RewardConfig())
    problem = Problem("1", "half of one?", "math500", {"answer": "\\frac{1}{2}"})
    assert verifier(problem, "half of one is 0.5</think>The answer is \\boxed{0.5}.").correct
    assert not verifier(problem, "it is \\boxed{1/2} I think").correct  # never closed its thinking
    assert verifier(problem, "x</think>\\boxed{1/2}", finish_reason="length").truncated


def test_prioritized_sampling_follows_one_minus_success_rate() -> None:
    sampler = ProblemSampler([0.0] * 4, curriculum=False, prioritized=True, seed=1)
    for index, rewards in enumerate([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]):
        sampler.update(index, rewards)
    _pool, probs = sampler.probabilities(progress=0.0)
    assert dict(zip(_pool.tolist(), probs, strict=True)) == pytest.approx(
        {0: 0.0, 1: 0.5 / 2.25, 2: 1 / 2.25, 3: 0.75 / 2.25}
    )
    draws = np.bincount([sampler.sample(1, 0.0)[0] for _ in range(9000)], minlength=4) / 9000
    assert draws == pytest.approx([0.0, 0.5 / 2.25, 1 / 2.25, 0.75 / 2.25], abs=0.02)


def test_curriculum_widens_from_easy_to_all() -> None:
    difficulty = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0]
    sampler = ProblemSampler(difficulty, curriculum=True, prioritized=False, curriculum_start=0.3, seed=0)
    assert sorted(sampler.eligible(0.0).tolist()) == [1, 5, 9]  # the 3 easiest
    assert len(sampler.eligible(0.5)) == 7 and len(sampler.eligible(1.0)) == 10
    early = {i for _ in range(200) for i in sampler.sample(2, 0.0)}
    assert early == {1, 5, 9}


def test_sampler_state_round_trip_reproduces_draws() -> None:
    a = ProblemSampler(list(range(20)), seed=3)
    a.update(4, [1, 0])
    state = a.state_dict()
    expected = [a.sample(5, 0.6) for _ in range(3)]
    b = ProblemSampler(list(range(20)), seed=99)
    b.load_state_dict(state)
    assert [b.sample(5, 0.6) for _ in range(3)] == expected
    with pytest.raises(ValueError, match="covers 20 problems, the data has 3"):
        ProblemSampler([1, 2, 3]).load_state_dict(state)


def test_sequence_logprobs_score_only_the_trained_positions_and_match_the_full_computation() -> None:
    """The output layer runs from the first trained position on (``logits_to_keep``); the sums, the entropy and
    the token count equal those of the logits of every position, and at a temperature those of the scaled logits."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from k15.train.runtime.logprobs import sequence_logprobs

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)  # fmt: skip
    model = LlamaForCausalLM(config).double().eval()
    sequences = [[1, 5, 7, 9, 11, 13, 2], [1, 4, 6, 8, 10], [1, 3, 3, 3, 3, 3, 3, 3, 2]]
    masks = [[0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1, 1, 1, 1]]  # prompts of 3, 4 and 5 tokens
    kept, forward = [], model.forward

    @functools.wraps(forward)  # keeps the signature, which says the model takes logits_to_keep
    def spy(**kwargs: Any) -> Any:
        kept.append(kwargs.get("logits_to_keep"))
        return forward(**kwargs)

    model.forward = spy  # type: ignore[method-assign]
    logp, entropy, count = sequence_logprobs(model, sequences, masks, pad_id=0, with_entropy=True)
    assert kept == [9 - 2]  # the 9-wide batch's first trained prediction is at position 2 (it scores token 3)

    tempered, _, _ = sequence_logprobs(model, sequences, masks, pad_id=0, temperature=0.5)

    expect_logp, expect_entropy, expect_tempered = [], [], []
    for seq, mask in zip(sequences, masks, strict=True):
        with torch.no_grad():
            logits = forward(input_ids=torch.tensor([seq])).logits[0, :-1]
        all_logp, all_tempered = torch.log_softmax(logits, -1), torch.log_softmax(logits / 0.5, -1)
        picked = [t for t in range(len(seq) - 1) if mask[t + 1]]
        expect_logp.append(sum(all_logp[t, seq[t + 1]] for t in picked))
        expect_tempered.append(sum(all_tempered[t, seq[t + 1]] for t in picked))
        expect_entropy += [-(all_logp[t].exp() * all_logp[t]).sum() for t in picked]
    torch.testing.assert_close(logp.detach(), torch.stack(expect_logp).float())  # log-probs are taken in fp32
    torch.testing.assert_close(entropy, torch.stack(expect_entropy).mean().float())
    assert count.item() == sum(sum(m[1:]) for m in masks)
    # the policy that sampling at temperature 0.5 follows: softmax(logits / 0.5), not the model's plain softmax
    torch.testing.assert_close(tempered.detach(), torch.stack(expect_tempered).float())
    assert not torch.allclose(tempered, logp)


def test_micro_batches_group_items_of_similar_length_within_each_mini_batch() -> None:
    """Mini-batches keep their items (their gradients add up either way); inside one, the micro-batches are cut
    from the items ordered by length, so a short sequence does not pad to a long one."""
    from types import SimpleNamespace

    from k15.train.runtime.trainer import Trainer

    trainer = SimpleNamespace(cfg=SimpleNamespace(deepspeed=SimpleNamespace(micro_batch_size=2)))
    lengths = [50, 60, 400, 380, 55, 70, 390, 410]
    minis = Trainer.mini_batches(trainer, list(range(8)), 2, lambda i: lengths[i])  # type: ignore[arg-type]
    assert minis == [[[0, 4], [6, 2]], [[1, 5], [3, 7]]]  # mini-batches items[0::2] and items[1::2], as before
    padded = sum(len(micro) * max(lengths[i] for i in micro) for mini in minis for micro in mini)
    assert padded == 2 * (55 + 400 + 70 + 410)  # in the given order: 2 * (400 + 390 + 380 + 410)


class PlainEngine:
    """The surface of a DeepSpeed engine the RL update uses, over a plain module and SGD: gradients add up over
    micro-batches and the optimizer steps at the accumulation boundary (DeepSpeed itself is tested in test_train)."""

    def __init__(self, module: torch.nn.Module, lr: float) -> None:
        self.module = module
        self.optimizer = torch.optim.SGD(module.parameters(), lr=lr)
        self.boundary = False

    def __call__(self, **inputs: Any) -> Any:
        return self.module(**inputs)

    def parameters(self) -> Any:
        return self.module.parameters()

    def set_gradient_accumulation_boundary(self, boundary: bool) -> None:
        self.boundary = boundary

    def backward(self, loss: torch.Tensor, scale_wrt_gas: bool = False) -> None:
        loss.backward()

    def step(self) -> None:
        if self.boundary:
            self.optimizer.step()
            self.optimizer.zero_grad()

    def get_global_grad_norm(self) -> float:
        return 0.0


def rl_update(model: Any, samples: list[dict[str, Any]], mini_batches: int, tau: float) -> tuple[dict, list[int]]:
    """The RL trainer's ``update`` on ``model`` (SGD, lr 0.1); its statistics and the sizes of the batches its
    no-grad π_θi pass scored."""
    from types import SimpleNamespace

    from k15.train.rl.trainer import RLTrainer
    from k15.train.runtime.trainer import Trainer

    cfg = SimpleNamespace(seed=0, epochs=1, mini_batches=mini_batches, tau=tau,
                          rollout=SimpleNamespace(temperature=1.0),
                          deepspeed=SimpleNamespace(micro_batch_size=2))  # fmt: skip
    trainer = SimpleNamespace(cfg=cfg, step=0, world=1, pad_id=0, vision=None, engine=PlainEngine(model, lr=0.1),
                              _own_grad_norm=False)  # fmt: skip
    for name in ("mini_batches", "micro_batches", "logprobs", "backward", "optimizer_step", "grad_norm"):
        setattr(trainer, name, functools.partial(getattr(Trainer, name), trainer))
    scored: list[int] = []

    def forward(model: Any, batch: list[dict[str, Any]], with_entropy: bool = False) -> Any:
        if model is trainer.engine.module and batch:
            scored.append(len(batch))
        return RLTrainer._forward(trainer, model, batch, with_entropy)  # type: ignore[arg-type]

    trainer._forward = forward
    trainer._add_entropy = RLTrainer._add_entropy
    return RLTrainer.update(trainer, samples), scored  # type: ignore[arg-type]


@pytest.mark.parametrize("mini_batches", [1, 2])
def test_rl_update_takes_pi_theta_i_from_the_first_mini_batch_and_matches_eq3(
    tiny_model: Any, mini_batches: int
) -> None:
    """log π_θi comes from the first mini-batch's own training forward (π_θ is still π_θi there): the no-grad pass
    scores only the other mini-batches' samples (none with one), every sample's entropy is counted once, and the
    first optimizer step equals one SGD step on paper Eq. 3 with π_θi scored in a separate pass."""
    from transformers import AutoModelForCausalLM

    from k15.train.runtime.logprobs import sequence_logprobs

    rng = np.random.default_rng(0)
    samples = []
    for i in range(8):
        prompt, response = rng.integers(5, 500, 4 + i % 3).tolist(), rng.integers(5, 500, 3 + 2 * (i % 4)).tolist()
        samples.append({"ids": prompt + response, "mask": [0] * len(prompt) + [1] * len(response),
                        "advantage": float(rng.normal()), "images": []})  # fmt: skip
    tau = 0.5
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    initial = [p.detach().clone() for p in model.parameters()]

    stats, scored = rl_update(model, samples, mini_batches, tau)

    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), initial, strict=True))  # it trained

    assert sum(scored) == (0 if mini_batches == 1 else len(samples) // 2)
    assert stats["tokens"] == sum(sum(s["mask"][1:]) for s in samples)  # entropy over every response token, once
    assert stats["entropy_x_tokens"] > 0
    if mini_batches == 1:
        ids, masks = [s["ids"] for s in samples], [s["mask"] for s in samples]
        with torch.no_grad():
            old = sequence_logprobs(reference.eval(), ids, masks, 0)[0]
        logp = sequence_logprobs(reference.train(), ids, masks, 0)[0]
        adv = torch.tensor([s["advantage"] for s in samples])
        mirror_descent_terms(logp, old, adv, tau).mean().backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.1 * p.grad
        for got, want in zip(model.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
