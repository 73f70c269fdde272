"""Engine settings on CPU: the KV cache is sized explicitly, no larger than the model can fill."""

from __future__ import annotations

from pathlib import Path

import pytest

from k15.engine import EngineConfig, kv_bytes_per_token, node_memory_bytes, on_cpu, split_cpus


def test_kv_bytes_per_token_follow_the_model_config(tiny_model: Path, tmp_path: Path) -> None:
    # the tiny model: 2 layers, 1 KV head of 64 dims; keys and values
    assert kv_bytes_per_token(tiny_model, "float32") == 2 * 2 * 1 * 64 * 4
    assert kv_bytes_per_token(tiny_model, "bfloat16") == 2 * 2 * 1 * 64 * 2
    assert kv_bytes_per_token(tmp_path, "float32") is None  # no config.json: unknown


@pytest.mark.skipif(not on_cpu(), reason="the explicit KV size is the CPU engine's")
def test_cpu_kv_cache_is_the_share_capped_by_what_the_model_can_use(tiny_model: Path) -> None:
    cfg = EngineConfig(dtype="float32", max_model_len=512, max_num_seqs=8, gpu_memory_utilization=0.5)
    assert cfg.kv_cache_bytes(tiny_model) == 2 * 2 * 64 * 4 * 8 * 512  # far below half the RAM
    assert cfg.kv_cache_bytes() == int(0.5 * node_memory_bytes())  # no model: the share
    assert cfg.llm_kwargs(tiny_model)["kv_cache_memory_bytes"] == cfg.kv_cache_bytes(tiny_model)
    args = cfg.server_args(tiny_model)
    assert args[args.index("--kv-cache-memory-bytes") + 1] == str(cfg.kv_cache_bytes(tiny_model))


@pytest.mark.skipif(not on_cpu(), reason="the engine runs in process by default on CPU only")
def test_cpu_engine_runs_in_process_unless_told_or_one_of_several_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    import k15.engine

    cfg = EngineConfig()
    assert cfg.runs_in_process()
    assert cfg.llm_kwargs()["distributed_executor_backend"] == "uni"
    args = cfg.server_args()
    assert args[args.index("--distributed-executor-backend") + 1] == "uni"
    assert cfg.server_env() == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}

    spawned = EngineConfig(in_process=False)
    assert "distributed_executor_backend" not in spawned.llm_kwargs()
    assert "--distributed-executor-backend" not in spawned.server_args() and spawned.server_env() == {}
    assert not EngineConfig(tensor_parallel_size=2).runs_in_process()

    monkeypatch.setattr(k15.engine, "caller_world_size", lambda: 2)  # a rank of a two-rank DeepSpeed trainer
    assert not EngineConfig().runs_in_process()
    assert EngineConfig(in_process=True).runs_in_process()


def test_split_cpus_gives_each_engine_a_contiguous_share_of_the_cores() -> None:
    assert split_cpus(2, [0, 1]) == [[0], [1]]
    assert split_cpus(2, [4, 0, 1, 2, 3]) == [[0, 1, 2], [3, 4]]  # sorted; the first share takes the remainder
    assert split_cpus(3, [0, 1, 2, 3, 4, 5, 6]) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_cpus(2, [0]) is None  # fewer cores than engines: nothing to split
    assert split_cpus(1, [0, 1]) is None  # one engine keeps every core
