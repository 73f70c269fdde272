"""k15's vLLM plugin: the top-p filter keeps exactly the tokens vLLM's sort-based filter keeps, and vLLM finds and
loads the plugin through its entry point."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch

from k15 import vllm_plugin


def vllm_filter(logits: torch.Tensor, k: torch.Tensor | None, p: torch.Tensor | None) -> torch.Tensor:
    """vLLM's own sort-based filter, as its CPU sampler calls it."""
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    return apply_top_k_top_p_pytorch(logits, k, p, allow_cpu_sync=True)


@pytest.mark.parametrize("sharpness", [0.5, 2.0, 8.0, 30.0])
def test_top_p_filter_keeps_the_tokens_vllm_keeps(sharpness: float) -> None:
    generator = torch.Generator().manual_seed(int(sharpness * 10))
    logits = torch.randn(24, 5000, generator=generator) * sharpness
    logits[3, :10] += 40  # one row whose nucleus is a few tokens
    p = torch.rand(24, generator=generator) * 0.98 + 0.01
    p[0], p[1], p[2] = 1.0, 0.95, 0.5  # p = 1 keeps every token of non-zero probability (left to vLLM's filter)
    calls: list[int] = []

    def counted(rows: torch.Tensor, k: torch.Tensor | None, row_p: torch.Tensor) -> torch.Tensor:
        calls.append(len(rows))
        return vllm_filter(rows, k, row_p)

    expected = vllm_filter(logits.clone(), None, p)
    got = vllm_plugin.top_p_filter(logits.clone(), p, counted)
    assert torch.equal(torch.isfinite(got), torch.isfinite(expected))
    assert torch.equal(got[torch.isfinite(got)], logits[torch.isfinite(expected)]), "kept logits are unchanged"
    if sharpness >= 8:  # peaked rows: their nucleus is among the candidates, only p = 1 goes to vLLM's filter
        assert calls == [1]


def test_vllm_finds_the_plugin_and_it_routes_only_cpu_top_p() -> None:
    from vllm.v1.sample.ops import topk_topp_sampler as sampler

    assert "k15.vllm_plugin:register" in {e.value for e in entry_points(group="vllm.general_plugins")}
    vllm_plugin.register()
    vllm_plugin.register()  # vLLM may load plugins more than once per process
    patched = sampler.apply_top_k_top_p
    assert patched.k15 and not getattr(patched.__wrapped__, "k15", False)
    logits = torch.randn(4, 300) * 10
    k = torch.full((4,), 5)
    assert torch.isfinite(patched(logits.clone(), k, None)).sum(dim=1).tolist() == [5] * 4, "top-k: vLLM's own"
    assert torch.equal(patched(logits.clone(), None, None), logits), "neither: untouched"


def test_with_bf16_logits_the_filters_differ_only_in_how_they_break_ties_at_the_boundary() -> None:
    """A bf16 model's logits repeat values, and both filters keep an arbitrary part of a tie at the nucleus'
    edge (vLLM's sort is not stable); every token on which they disagree has exactly the edge's logit."""
    logits = (torch.randn(64, 20000, generator=torch.Generator().manual_seed(1)) * 7).bfloat16().float()
    p = torch.full((64,), 0.95)
    ours, theirs = vllm_plugin.top_p_filter(logits.clone(), p, vllm_filter), vllm_filter(logits.clone(), None, p)
    differ = torch.isfinite(ours) != torch.isfinite(theirs)
    assert differ.any(), "these logits have ties at the edge (11 rows with this seed)"
    for row in differ.any(dim=1).nonzero().flatten().tolist():
        kept = torch.isfinite(ours[row]) | torch.isfinite(theirs[row])
        edge = logits[row][kept].min()
        assert (logits[row][differ[row]] == edge).all(), f"row {row}: a non-tied token differs"
