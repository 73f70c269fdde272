"""The policy-optimisation loss of Kimi k1.5: online policy mirror descent (§2.3.2).

At iteration i the objective is max_θ E[r(x, y, y*)] − τ·KL(π_θ(x) ‖ π_θi(x)). With τ·log Z estimated by the mean
reward r̄ of the k samples of a prompt, the gradient is paper Eq. 3:

    (1/k) Σ_j [ ∇log π_θ(y_j|x)·(r_j − r̄) − (τ/2)·∇(log π_θ(y_j|x) − log π_θi(y_j|x))² ]

so the loss minimised here is

    L(θ) = mean_j [ −(r_j − r̄)·log π_θ(y_j|x) + (τ/2)·(log π_θ(y_j|x) − log π_θi(y_j|x))² ]

with sequence log-probabilities (sums over the response tokens), π_θi fixed for the iteration, and no value network.
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_mean(values: Tensor, groups: Tensor) -> Tensor:
    """For each element, the mean of ``values`` over the elements sharing its group id (r̄ per prompt)."""
    count = torch.zeros(int(groups.max()) + 1, dtype=values.dtype, device=values.device)
    total = torch.zeros_like(count)
    count.index_add_(0, groups, torch.ones_like(values))
    total.index_add_(0, groups, values)
    return (total / count)[groups]


def mirror_descent_loss(
    logp: Tensor, ref_logp: Tensor, rewards: Tensor, groups: Tensor, tau: float
) -> tuple[Tensor, dict[str, float]]:
    """Paper Eq. 3 as a loss. All inputs have one entry per sampled response.

    ``logp``: Σ_t log π_θ(y_t | x, y_<t) (with grad); ``ref_logp``: the same under π_θi (no grad);
    ``rewards``: task reward plus length reward; ``groups``: the prompt index of each response (its k samples
    share one, so r̄ is their mean reward). Returns the loss and the terms for logging.
    """
    baseline = group_mean(rewards, groups)
    advantage = rewards - baseline
    log_ratio = logp - ref_logp.detach()
    policy_term = -(advantage.detach() * logp)
    kl_term = 0.5 * tau * log_ratio.pow(2)
    loss = (policy_term + kl_term).mean()
    stats = {
        "loss": loss.item(),
        "policy_term": policy_term.mean().item(),
        "sq_log_ratio": log_ratio.pow(2).mean().item(),
        "mean_advantage_abs": advantage.abs().mean().item(),
    }
    return loss, stats
