"""The policy-optimisation losses: Kimi k1.5's online policy mirror descent (§2.3.2) and DPO (long2short, §2.4).

At iteration i the objective is max_θ E[r(x, y, y*)] − τ·KL(π_θ(x) ‖ π_θi(x)). With τ·log Z estimated by the mean
reward r̄ of the k samples of a prompt, the gradient is paper Eq. 3:

    (1/k) Σ_j [ ∇log π_θ(y_j|x)·(r_j − r̄) − (τ/2)·∇(log π_θ(y_j|x) − log π_θi(y_j|x))² ]

so the loss minimised here is

    L(θ) = mean_j [ −(r_j − r̄)·log π_θ(y_j|x) + (τ/2)·(log π_θ(y_j|x) − log π_θi(y_j|x))² ]

with sequence log-probabilities (sums over the response tokens), π_θi fixed for the iteration, and no value network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def group_mean(values: Tensor, groups: Tensor) -> Tensor:
    """For each element, the mean of ``values`` over the elements sharing its group id (r̄ per prompt)."""
    count = torch.zeros(int(groups.max()) + 1, dtype=values.dtype, device=values.device)
    total = torch.zeros_like(count)
    count.index_add_(0, groups, torch.ones_like(values))
    total.index_add_(0, groups, values)
    return (total / count)[groups]


def advantages(rewards: Tensor, groups: Tensor) -> Tensor:
    """r − r̄: each response's reward minus the mean reward of its prompt's k samples (no value network)."""
    return rewards - group_mean(rewards, groups)


def mirror_descent_terms(logp: Tensor, old_logp: Tensor, advantage: Tensor, tau: float) -> Tensor:
    """Per-response loss of paper Eq. 3: −(r − r̄)·log π_θ(y|x) + (τ/2)·(log π_θ(y|x) − log π_θi(y|x))².

    ``logp``: Σ_t log π_θ(y_t | x, y_<t) (with grad); ``old_logp``: the same under π_θi, this iteration's policy
    (no grad); ``advantage``: r − r̄ from :func:`advantages`. The trainer sums these over micro-batches and divides
    by the mini-batch size (the mean in Eq. 3).
    """
    return -(advantage.detach() * logp) + 0.5 * tau * (logp - old_logp.detach()).pow(2)


def dpo_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """Per-pair DPO loss and implicit reward margin, from sequence log-probabilities of the chosen response y_w and
    the rejected y_l under the policy π_θ and the fixed reference π_ref.

    DPO (Rafailov et al. 2023, Eq. 7):
        L = −log σ(β·[(log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))])
    The margin is the bracket times β (detached); it is positive when the policy prefers y_w more than π_ref does.
    """
    margin = beta * ((policy_chosen - ref_chosen.detach()) - (policy_rejected - ref_rejected.detach()))
    return -F.logsigmoid(margin), margin.detach()
