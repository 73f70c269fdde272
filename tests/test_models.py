import json
import shutil
import time
from pathlib import Path

import pytest

from k15 import models, precision
from k15.checkpoint import CheckpointInfo, Kind, read_info, write_info
from tests.conftest import run_k15


def test_prepare_default_recovers_from_an_interrupted_run_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K15_HOME", str(tmp_path))
    target = models.default_model_dir()
    # What a kill mid-conversion can leave: a half-written temp dir, or a target without its k15.json.
    (target.parent / f".{models.DEFAULT_NAME}-leftover").mkdir(parents=True)
    target.mkdir()
    (target / "config.json").write_text("{}")

    path = models.prepare_default(progress=False)
    assert path == target
    info = read_info(path)
    assert info is not None and info.kind is Kind.base
    assert (path / "model.safetensors").stat().st_size > 200e6  # 135M params in bf16
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]

    stamp = (path / "model.safetensors").stat().st_mtime
    start = time.monotonic()
    assert models.prepare_default(progress=False) == path
    assert time.monotonic() - start < 1 and (path / "model.safetensors").stat().st_mtime == stamp


def test_concurrent_prepare_default_converts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two commands started at once on a new machine: one converts, the other waits and reuses it. The conversion
    itself (25 s, tested above) is replaced by a slow recorder; the lock and the rename are the real ones."""
    import threading

    monkeypatch.setenv("K15_HOME", str(tmp_path))
    calls: list[int] = []

    def slow_convert(gguf: Path, out: Path) -> None:
        calls.append(threading.get_ident())
        time.sleep(0.5)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", slow_convert)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(models.prepare_default(progress=False))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1, "the second caller converted again instead of waiting for the first"
    assert results == [models.default_model_dir()] * 2
    assert (results[0] / "config.json").is_file() and read_info(results[0]) is not None
    assert not [p for p in results[0].parent.iterdir() if p.name.startswith(f".{models.DEFAULT_NAME}-")]


def test_resolve_model(default_model: Path, tmp_path: Path) -> None:
    assert models.resolve_model(None) == default_model
    assert models.resolve_model("default") == default_model
    with pytest.raises(FileNotFoundError, match="no such directory"):
        models.resolve_model(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="not a Hugging Face checkpoint"):
        models.resolve_model(str(tmp_path))


def test_models_list_shows_default_and_run_checkpoints(default_model: Path, tiny_model: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_ckpt = runs / "demo" / "checkpoints" / "iter-3"
    shutil.copytree(tiny_model, run_ckpt)
    listed = run_k15("models", "list", env={"K15_RUNS": str(runs)})
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["KIND", "SIZE", "NAME"]
    assert any(line.startswith("base") and str(default_model) in line for line in lines)
    assert any(line.startswith("unknown") and "iter-3" in line for line in lines)
    assert lines[-1].startswith("precision on this machine (dtype auto): ") and "(auto" in lines[-1]
    forced = run_k15("models", "list", env={"K15_RUNS": str(runs), "K15_DTYPE": "float32"})
    assert forced.stdout.splitlines()[-1].endswith(
        "float32 (auto, forced by K15_DTYPE; " + precision.native_bf16()[1] + ")"
    )
    wrong = run_k15("models", "list", env={"K15_RUNS": str(runs), "K15_DTYPE": "fp8"})
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        "k15: error: K15_DTYPE='fp8' is not a dtype; expected one of bfloat16, float32, float16 (or unset)"
    ], wrong.stderr


def test_models_list_reads_kind_from_metadata(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K15_RUNS", str(tmp_path))
    ckpt = tmp_path / "run" / "final"
    shutil.copytree(tiny_model, ckpt)
    write_info(ckpt, CheckpointInfo(kind=Kind.long_cot, name="run-final", iteration=7))
    rows = {row.name: row for row in models.list_checkpoints()}
    assert rows["run-final"].kind == "long-cot"
    assert rows["run-final"].size > 0
