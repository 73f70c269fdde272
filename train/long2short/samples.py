"""Sampling for the shortest and DPO long2short methods (§2.4): n responses per prompt from the long-CoT checkpoint
with vLLM, each graded by the shared verifier. One JSONL record per prompt, appended as it finishes (with the
:class:`k15.train.data.warmup.Journal` progress file beside it), so a killed run resumes with the prompts not yet done:

    {"id", "prompt", "gold", "grader", "samples": [{"text", "tokens", "correct", "finish_reason"}]}

``tokens`` is the response length in tokens, the length both methods compare. A prompt with images (a
vision-language model's) is sampled with them, as RL rolls out, and its record keeps them (``images``), so the
shortest and DPO rows built from it carry them too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator
from tqdm import tqdm

from k15 import paths
from k15.checkpoint import Kind, is_multimodal
from k15.config import Config, merged
from k15.engine import EngineConfig
from k15.images import image_fields, open_image
from k15.jsonl import read_rows, write_rows
from k15.models import resolve_model
from k15.train.data.formats import Problem
from k15.train.data.warmup import Journal
from k15.train.rl.rewards import RewardConfig, Verifier
from k15.train.rl.rollout import Images, RolloutEngine, Segment, prompt_ids
from k15.train.rl.trainer import PromptDataConfig
from k15.train.runtime.distributed import barrier, init_distributed, rank, world_size
from k15.train.runtime.trainer import TrainerConfig
from k15.train.runtime.vision import VisionInputs, check_images, load_k15_tokenizer

Row = dict[str, Any]
SAMPLES_FILE = "samples.jsonl"


class SampleConfig(Config):
    """How the long-CoT model is sampled."""

    n: int = Field(8, ge=1, description="responses per prompt")
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)
    prompts_per_call: int = Field(32, ge=1, description="prompts per vLLM call; their records are written after it")
    seed: int = 0
    engine: EngineConfig = EngineConfig()

    @model_validator(mode="after")
    def _fits(self) -> SampleConfig:
        if self.max_tokens >= self.engine.max_model_len:
            raise ValueError(f"sampling.max_tokens ({self.max_tokens}) must be below "
                             f"sampling.engine.max_model_len ({self.engine.max_model_len})")  # fmt: skip
        return self


@dataclass(frozen=True)
class TrainedWith:
    """How a sampled method trains: its name, its trainer's config class, the section of the method's config with
    some of that class's keys, and the file the training rows are written to."""

    method: str
    config: type[TrainerConfig]
    section: str
    rows_file: str


class SampledMethodConfig(Config):
    """What the shortest and DPO methods share: the long-CoT model, the prompts and the sampling."""

    model: str | None = Field(None, description="the long-CoT checkpoint: sampled from, then trained")
    data: PromptDataConfig
    name: str
    output_dir: str | None = Field(None, description="default: $K15_RUNS/<name>; holds samples.jsonl and the run")
    samples: str | None = Field(None, description="the samples file, shareable by shortest and DPO (default: "
                                "<run dir>/samples.jsonl)")  # fmt: skip
    sampling: SampleConfig = SampleConfig()
    trainer: ClassVar[TrainedWith]  # set by each method

    def run_dir(self) -> Path:
        return paths.run_dir(self.output_dir, self.name)

    def samples_file(self) -> Path:
        return Path(self.samples).expanduser() if self.samples else self.run_dir() / SAMPLES_FILE

    def trainer_config(self) -> Any:
        """The trainer's config: the keys set in the trainer's section plus what this method fixes."""
        t = self.trainer
        fixed = {"model": self.model, "data": str(self.run_dir() / t.rows_file), "name": self.name,
                 "output_dir": str(self.run_dir()), "kind": Kind.long2short, "method": t.method}  # fmt: skip
        return merged(t.config, getattr(self, t.section), fixed, t.section)

    @model_validator(mode="after")
    def _trainer_valid(self) -> SampledMethodConfig:
        self.trainer_config()  # a bad trainer setting fails here, before any sampling
        return self


def train_on(cfg: SampledMethodConfig, rows: list[Row], note: str, trainer: Callable[[Any], Any]) -> Path:
    """Write the method's training rows (first rank), then train on them on every rank; returns the checkpoint."""
    train_cfg = cfg.trainer_config()
    if rank() == 0:
        write_rows(train_cfg.data, rows)
        print(f"long2short {cfg.trainer.method}: {note} in {train_cfg.data}", flush=True)
    barrier()
    return trainer(train_cfg).train()


def load_tokenizer(model: Path) -> tuple[Any, VisionInputs | None]:
    """The checkpoint's tokenizer with the k15 template, and a vision-language model's processor (else None);
    ValueError when the model has no room for the think tokens."""
    from transformers import AutoConfig

    tokenizer, vision = load_k15_tokenizer(model)
    vocab = AutoConfig.from_pretrained(model).get_text_config().vocab_size
    if len(tokenizer) > vocab:
        raise ValueError(f"{model}: {len(tokenizer)} tokens with the k15 think tokens, but the model has {vocab} "
                         "embeddings; use a k15 long-CoT checkpoint")  # fmt: skip
    return tokenizer, vision


def prompt_inputs(tokenizer: Any, vision: VisionInputs | None, problem: Problem) -> tuple[list[int], Images | None]:
    """The ids the engine continues from and the problem's images for it (None for a text prompt), as RL makes
    them (:meth:`k15.train.rl.trainer.RLTrainer.image_inputs`)."""
    if not problem.images or vision is None:
        return prompt_ids(tokenizer, problem.text), None
    engine_ids, model_ids = vision.prompt(problem.text, problem.images)
    return engine_ids, Images([open_image(r) for r in problem.images], len(model_ids) - len(engine_ids))


VERIFIER = Verifier(RewardConfig())  # the rules for math, the sandbox for code


def graded_sample(tokenizer: Any, problem: Problem, segment: Segment) -> Row:
    """One response as recorded: its text, length, the shared grader's verdict and why generation stopped."""
    text = tokenizer.decode(segment.token_ids, skip_special_tokens=True)
    correct = VERIFIER(problem, text, segment.finish_reason).correct
    return {"text": text, "tokens": len(segment.token_ids), "correct": correct, "finish_reason": segment.finish_reason}


def sample_responses(model: str | None, problems: list[Problem], out: Path, cfg: SampleConfig) -> None:
    """Sample and grade ``cfg.n`` responses for each problem that ``out`` has no record of yet."""
    journal = Journal(out)
    todo = [(i, p) for i, p in enumerate(problems) if p.id not in journal.done]
    if not todo:
        print(f"long2short: {out} has the samples of every prompt; sampling skipped", flush=True)
        return
    model_path = resolve_model(model)
    tokenizer, vision = load_tokenizer(model_path)
    engine = RolloutEngine(model_path, cfg.engine, vision.placeholder_ids if vision is not None else ())
    try:
        with tqdm(total=len(problems), initial=len(problems) - len(todo), unit="prompt", desc="long2short samples",
                  dynamic_ncols=True) as bar:  # fmt: skip
            for start in range(0, len(todo), cfg.prompts_per_call):
                chunk = todo[start : start + cfg.prompts_per_call]
                inputs = [prompt_inputs(tokenizer, vision, p) for _, p in chunk]
                segments = engine.generate(
                    [c for c, _ in inputs for _ in range(cfg.n)], [cfg.max_tokens] * (len(chunk) * cfg.n),
                    cfg.temperature, cfg.top_p,
                    [(cfg.seed * 1_000_003 + i * cfg.n + j) % 2**31 for i, _ in chunk for j in range(cfg.n)],
                    [images for _, images in inputs for _ in range(cfg.n)],
                )  # fmt: skip
                for k, (_, problem) in enumerate(chunk):
                    samples = [graded_sample(tokenizer, problem, s) for s in segments[k * cfg.n : (k + 1) * cfg.n]]
                    record = {"prompt": problem.text, "gold": problem.record["answer"], "grader": problem.grader,
                              **image_fields(problem.images), "samples": samples}  # fmt: skip
                    journal.record(problem.id, [record], {"correct": sum(s["correct"] for s in samples)})
                    bar.update()
    finally:
        engine.close()


def read_records(path: Path) -> list[Row]:
    """The records of a samples file."""
    return read_rows(path)[0]


def collect_samples(cfg: SampledMethodConfig) -> list[Row]:
    """The record of every prompt of ``cfg.data``, in order, from the samples file; missing ones are
    sampled first, by the first rank while the others wait (skipped when the file is complete)."""
    problems = cfg.data.load()
    if image_rows := sum(bool(p.images) for p in problems):  # a text-only model fails here, before any sampling
        model = resolve_model(cfg.model)
        check_images(image_rows, cfg.data.path, str(model), is_multimodal(model))
    ids = [p.id for p in problems]
    duplicate, count = Counter(ids).most_common(1)[0]
    if count > 1:
        raise ValueError(f"{cfg.data.path}: problem id {duplicate!r} occurs {count} times; ids key the samples file")
    out = cfg.samples_file()
    init_distributed()
    if rank() == 0:
        sample_responses(cfg.model, problems, out, cfg.sampling)
    if world_size() > 1:  # sampling may outlast the default process-group timeout
        import torch.distributed as dist

        dist.barrier(group=dist.new_group(backend="gloo", timeout=timedelta(days=1)))
    by_id = {str(r["id"]): r for r in read_records(out)}
    return [by_id[i] for i in ids]


def summary(records: list[Row]) -> str:
    """Samples, correct ones and prompts with at least one correct response, as one line."""
    samples = [s for r in records for s in r["samples"]]
    correct = sum(s["correct"] for s in samples)
    solved = sum(any(s["correct"] for s in r["samples"]) for r in records)
    return (f"{len(records)} prompts, {len(samples)} samples, {correct} correct; "
            f"{solved} prompts with a correct response")  # fmt: skip
