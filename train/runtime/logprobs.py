"""Log-probabilities of sampled responses under a causal LM: the quantity every k15 loss is built from."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
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
    forward = getattr(model, "module", model).forward
    return "logits_to_keep" in inspect.signature(forward).parameters


def token_logprobs(
    model: Any, ids: Tensor, attention: Tensor, with_entropy: bool = False, start: int = 0
) -> tuple[Tensor, Tensor | None]:
    """log π(token_{t+1} | tokens_≤t) for the positions t ≥ ``start``, and the policy's entropy there when asked.

    The output layer and the softmax over the vocabulary run on those positions only (a model that takes
    ``logits_to_keep``): the prompt shared by a micro-batch costs no logits."""
    keep = ids.shape[1] - start
    if start > 0 and _keeps_logits(model):
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=keep).logits[:, :-1]
    else:
        logits = model(input_ids=ids, attention_mask=attention).logits[:, start:-1]
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, ids[:, start + 1 :].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1).detach() if with_entropy else None
    return logp, entropy


def sequence_logprobs(model: Any, sequences: Sequence[list[int]], masks: Sequence[list[int]], pad_id: int,
                      with_entropy: bool = False) -> tuple[Tensor, Tensor | None, Tensor]:  # fmt: skip
    """Σ_t log π(y_t | x, y_<t) over the masked tokens of each sequence; the mean entropy over those tokens
    (when asked) and the count of masked tokens. Logits are computed from the first position any sequence of
    the batch trains on."""
    device = next(model.parameters()).device
    ids, attention, mask = (t.to(device) for t in pad_batch(sequences, masks, pad_id))
    trained = mask.any(0).nonzero()
    start = int(trained[0]) if len(trained) else mask.shape[1] - 1
    mask = mask[:, start:]
    logp, entropy = token_logprobs(model, ids, attention, with_entropy, start)
    mean_entropy = (entropy * mask).sum() / mask.sum().clamp(min=1) if entropy is not None else None
    return (logp * mask).sum(-1), mean_entropy, mask.sum()
