"""Log-probabilities of sampled responses under a causal LM: the quantity every k15 loss is built from."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def pad_batch(sequences: Sequence[list[int]], masks: Sequence[list[int]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and the loss mask of the *predicted* tokens.

    ``masks[i][t]`` marks token t of sequence i as trained (e.g. response tokens); the returned mask is shifted so
    that position t scores the prediction of token t + 1.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    target_mask = torch.zeros((len(sequences), width - 1), dtype=torch.float32)
    for i, (seq, mask) in enumerate(zip(sequences, masks, strict=True)):
        if len(seq) != len(mask):
            raise ValueError(f"sequence {i}: {len(seq)} tokens but a mask of {len(mask)}")
        ids[i, : len(seq)] = torch.tensor(seq)
        attention[i, : len(seq)] = 1
        target_mask[i, : len(seq) - 1] = torch.tensor(mask[1:], dtype=torch.float32)
    return ids, attention, target_mask


def _keeps_logits(model: Any) -> bool:
    """Whether ``model`` (or the module a DeepSpeed engine wraps) can compute the last positions' logits only."""
    return _takes_logits_to_keep(type(getattr(model, "module", model)))


@functools.cache
def _takes_logits_to_keep(model_class: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def next_token_logits(
    model: Any, ids: Tensor, attention: Tensor, start: int = 0, pixels: Mapping[str, Tensor] | None = None
) -> Tensor:
    """The logits that predict tokens ``start + 1 …`` (positions ``start …`` but the last); ``pixels``: a vision
    model's image inputs for the batch (its processor's). The output layer runs on those positions only when the
    model takes ``logits_to_keep``: a prompt shared by the batch costs no logits."""
    extra = {k: v.to(ids.device) for k, v in (pixels or {}).items()}
    if start > 0 and _keeps_logits(model):
        return model(input_ids=ids, attention_mask=attention, logits_to_keep=ids.shape[1] - start,
                     **extra).logits[:, :-1]  # fmt: skip
    return model(input_ids=ids, attention_mask=attention, **extra).logits[:, start:-1]


def token_logprobs(model: Any, ids: Tensor, attention: Tensor, pixels: Mapping[str, Tensor] | None = None) -> Tensor:
    """log π(token_{t+1} | tokens_≤t) for every position t."""
    logp_all = torch.log_softmax(next_token_logits(model, ids, attention, 0, pixels).float(), dim=-1)
    return logp_all.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def sequence_logprobs(
    model: Any, sequences: Sequence[list[int]], masks: Sequence[list[int]], pad_id: int,
    with_entropy: bool = False, temperature: float = 1.0, pixels: Mapping[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor | None, Tensor]:  # fmt: skip
    """Σ_t log π(y_t | x, y_<t) over the masked tokens of each sequence; the mean entropy of π over those tokens
    (when asked; never differentiated) and the count of masked tokens. ``pixels``: a vision model's image inputs
    for the batch, whose sequences carry the images' expanded placeholders.

    π is the model's softmax at ``temperature`` (logits divided by it): the policy that rollouts sampled at that
    temperature actually follow, so the loss is on-policy for them (as verl and OpenRLHF do). 0 means greedy and
    is scored at temperature 1.

    Only the masked positions go through the softmax over the vocabulary (a fused cross-entropy), so padding and
    prompts cost no vocabulary-wide work; logits start at the first position any sequence trains on."""
    device = next(model.parameters()).device
    ids, attention, mask = (t.to(device) for t in pad_batch(sequences, masks, pad_id))
    columns = mask.any(0).nonzero()
    start = int(columns[0]) if len(columns) else mask.shape[1] - 1
    trained = mask[:, start:].bool()
    logits = next_token_logits(model, ids, attention, start, pixels)[trained].float()  # (masked tokens, vocabulary)
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    token_logp = -F.cross_entropy(logits, ids[:, start + 1 :][trained], reduction="none")
    logp = torch.zeros(len(sequences), dtype=token_logp.dtype, device=device)
    logp = logp.index_add(0, trained.nonzero()[:, 0], token_logp)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            logp_all = torch.log_softmax(logits, dim=-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean() if len(logits) else logits.new_zeros(())
    return logp, entropy, mask.sum()
