"""k15's vLLM plugin (entry point ``vllm.general_plugins``; vLLM loads it in every engine process): a faster nucleus
(top-p) filter on CPU.

vLLM's CPU sampler applies top-p by sorting the whole vocabulary of every row at every decoding step
(``apply_top_k_top_p_pytorch``). For SmolLM2's 49,152 tokens and 64 sequences that sort took about a third of an
evaluation's time at ``top_p=0.95`` (docs/evalsuite.md). :func:`top_p_filter` keeps the same tokens from the
``CANDIDATES`` most likely ones, which hold the nucleus on nearly every row; rows where they do not, and top-k, go
through vLLM's own function. Set ``VLLM_PLUGINS`` without ``k15`` to turn it off.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

CANDIDATES = 256
SLACK = 1e-4  # the candidates must hold p by more than float32's rounding of their sum


Filter = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


def top_p_filter(logits: torch.Tensor, p: torch.Tensor, exact: Filter) -> torch.Tensor:
    """``logits`` with every token outside each row's nucleus set to −inf, as vLLM's sort-based filter does.

    A token is kept when the probability of the tokens ranked above it is below p. When the ``CANDIDATES`` most
    likely tokens of a row hold more than p, every other token of that row has at least p above it, so the nucleus
    lies among them; the other rows are left to ``exact(logits, None, p)``.
    """
    k = min(CANDIDATES, logits.shape[-1])
    probs = logits.softmax(dim=-1, dtype=torch.float32)
    top_probs, top_ids = probs.topk(k, dim=-1)
    above = top_probs.cumsum(dim=-1) - top_probs
    kept = logits.gather(1, top_ids).masked_fill(above >= p.unsqueeze(1), float("-inf"))
    filtered = torch.full_like(logits, float("-inf")).scatter_(1, top_ids, kept)
    rest = (above[:, -1] + top_probs[:, -1] < p + SLACK).nonzero().squeeze(1)  # also every row with p = 1
    if len(rest):
        filtered[rest] = exact(logits[rest], None, p[rest])
    return filtered


def register() -> None:
    """Route vLLM's CPU top-p through :func:`top_p_filter` (no effect on other platforms or on top-k); vLLM's own
    function stays reachable as ``__wrapped__``."""
    from vllm.platforms import current_platform
    from vllm.v1.sample.ops import topk_topp_sampler as sampler

    if not current_platform.is_cpu() or getattr(sampler.apply_top_k_top_p, "k15", False):
        return
    vllm_filter = sampler.apply_top_k_top_p

    @functools.wraps(vllm_filter)
    def apply_top_k_top_p(logits: torch.Tensor, k: torch.Tensor | None, p: torch.Tensor | None) -> torch.Tensor:
        if k is not None or p is None:
            return vllm_filter(logits, k, p)
        return top_p_filter(logits, p, vllm_filter)

    apply_top_k_top_p.k15 = True  # type: ignore[attr-defined]
    sampler.apply_top_k_top_p = apply_top_k_top_p
