"""Model merging (long2short, §2.4): the weighted average of a long-CoT and a short-CoT model's weights, for two
checkpoints of one architecture and one tokenizer (a vision-language model's vision tower included). Tensors are
averaged in float32 and stored in the long model's dtype, shard by shard, so memory holds one shard at a time."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from k15 import paths
from k15.checkpoint import CheckpointInfo, Kind, is_multimodal, write_info
from k15.config import Config
from k15.models import resolve_model

# Config keys that say where or how a checkpoint was saved, not what the model is.
IGNORED_CONFIG_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype"}
EXTRA_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")


def check_weights(weights: Sequence[float]) -> tuple[float, float]:
    """(long, short) merge weights: two numbers ≥ 0 that sum to 1; ValueError otherwise."""
    if len(weights) != 2 or min(weights) < 0 or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"merge weights must be two numbers ≥ 0 (long, short) that sum to 1, got {list(weights)}")
    return float(weights[0]), float(weights[1])


def _model_keys(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the ignored keys, in its sub-configs too (a vision model's text and vision configs)."""
    return {k: _model_keys(v) if isinstance(v, dict) else v for k, v in config.items() if k not in IGNORED_CONFIG_KEYS}


def _check_configs(long: Path, short: Path) -> None:
    a, b = (_model_keys(json.loads((p / "config.json").read_text())) for p in (long, short))
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if differ:
        shown = ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in differ[:5])
        raise ValueError(f"cannot merge {long} and {short}: their configs differ ({shown})")


def _long_tokenizer(long: Path, short: Path) -> Any:
    """What writes the merged tokenizer, once both vocabularies are found equal: the long model's tokenizer with the
    k15 template, or for a vision-language model its processor (:func:`load_vision`: image processor too)."""
    from transformers import AutoTokenizer

    from k15.chat import apply_k15_template
    from k15.train.runtime.vision import load_vision

    tokenizer, other = (AutoTokenizer.from_pretrained(p) for p in (long, short))
    a, b = tokenizer.get_vocab(), other.get_vocab()
    if a != b:
        differ = sorted({t for t in a.keys() | b.keys() if a.get(t) != b.get(t)})
        raise ValueError(f"cannot merge {long} and {short}: their tokenizers differ in {len(differ)} vocabulary "
                         f"entries (e.g. {differ[0]!r})")  # fmt: skip
    if is_multimodal(long):
        saver = load_vision(long).processor
        tokenizer = saver.tokenizer
    else:
        apply_k15_template(tokenizer)
        saver = tokenizer
    config = json.loads((long / "config.json").read_text())
    vocab = config.get("text_config", config).get("vocab_size", len(tokenizer))
    if len(tokenizer) > vocab:
        raise ValueError(f"{long}: the k15 think tokens need {len(tokenizer)} embeddings, the model has {vocab}")
    return saver


def _tensor_files(path: Path) -> dict[str, Path]:
    """Tensor name → the safetensors file holding it."""
    from safetensors import safe_open

    found = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(file, "pt") as f:
            found.update(dict.fromkeys(f.keys(), file))
    return found


def merge_checkpoints(
    long: Path, short: Path, out: Path, weights: Sequence[float] = (0.5, 0.5), *, name: str | None = None
) -> Path:
    """Write ``weights[0]·long + weights[1]·short`` to ``out`` as a k15 long2short checkpoint (method ``merge``,
    named ``name``, default the directory's name) with the long model's config, generation config and tokenizer
    (k15 template; a vision-language model's processor); returns ``out``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    w_long, w_short = check_weights(weights)
    long, short, out = resolve_model(str(long)), resolve_model(str(short)), Path(out)
    _check_configs(long, short)
    saver = _long_tokenizer(long, short)
    long_files, short_files = _tensor_files(long), _tensor_files(short)
    if long_files.keys() != short_files.keys():
        differ = sorted(long_files.keys() ^ short_files.keys())
        raise ValueError(f"cannot merge {long} and {short}: {len(differ)} parameter names are not in both "
                         f"(e.g. {differ[0]!r})")  # fmt: skip
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        shorts = {f: stack.enter_context(safe_open(f, "pt")) for f in set(short_files.values())}
        for file in sorted(set(long_files.values())):
            merged = {}
            with safe_open(file, "pt") as source:
                for key in source.keys():  # noqa: SIM118 (a safetensors handle is not a mapping)
                    a, b = source.get_tensor(key), shorts[short_files[key]].get_tensor(key)
                    if a.shape != b.shape:
                        raise ValueError(f"cannot merge {long} and {short}: {key} has shape {tuple(a.shape)} "
                                         f"vs {tuple(b.shape)}")  # fmt: skip
                    merged[key] = (w_long * a.float() + w_short * b.float()).to(a.dtype)
            save_file(merged, tmp / file.name, metadata={"format": "pt"})
    for extra in EXTRA_FILES:
        if (long / extra).is_file():
            shutil.copy2(long / extra, tmp / extra)
    saver.save_pretrained(tmp)
    info = CheckpointInfo(kind=Kind.long2short, name=name or out.name, base_model=str(long), method="merge",
                          extra={"long": str(long), "short": str(short), "weights": [w_long, w_short]})  # fmt: skip
    write_info(tmp, info)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


class MergeConfig(Config):
    long: str = Field(description="the long-CoT checkpoint")
    short: str = Field(description="the short-CoT checkpoint: same architecture and tokenizer")
    weights: tuple[float, float] = Field((0.5, 0.5), description="(long, short): each ≥ 0, summing to 1")
    name: str = "long2short-merge"
    output_dir: str | None = Field(None, description="default: $K15_RUNS/<name>; the checkpoint is <output_dir>/final")

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_weights(value)

    def run_dir(self) -> Path:
        return paths.run_dir(self.output_dir, self.name)


def run(cfg: MergeConfig) -> Path:
    """Merge as configured; returns the checkpoint."""
    return merge_checkpoints(Path(cfg.long), Path(cfg.short), cfg.run_dir() / "final", cfg.weights, name=cfg.name)
