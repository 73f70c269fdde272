"""``k15 data``: training data — the CPU demo task's splits, long-CoT warmup SFT data, curated prompt sets and
text-rendered image prompt sets and data sets with their remote images downloaded.

Handlers raise ValueError / OSError / RuntimeError with a one-line message for bad input or an unreachable
endpoint; the ``k15`` CLI prints it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_core import PydanticUndefined

from k15.command import config_args
from k15.config import C, Config, load_config
from k15.prompts import MATH_PROMPT
from k15.train.data import DEMO_TASKS

if TYPE_CHECKING:
    from k15.train.data.formats import Problem
    from k15.train.data.warmup import Endpoint


class TeacherDataConfig(Config):
    """What warmup and curate share: where to sample, what to read and write, how to sample."""

    endpoint: str = Field(description="OpenAI-compatible base URL (…/v1)")
    api_key: str | None = Field(None, description="default: $OPENAI_API_KEY")
    model: str | None = Field(None, description="model name at the endpoint (default: the first served)")
    input: str = Field(description="problems JSONL (problem and answer fields)")
    output: str = Field(description="output JSONL; a rerun resumes it")
    k: int = Field(ge=1, description="samples per problem")
    temperature: float = Field(1.0, ge=0)
    max_tokens: int = Field(ge=1, description="per sample")
    concurrency: int = Field(8, ge=1, description="requests in flight")
    problem_field: str = "problem"
    answer_field: str = "answer"
    grader: str = Field("math", description="grader for rows that name none")
    prompt_template: str = Field(MATH_PROMPT, description="user prompt with {problem}")
    seed: int = Field(0, description="sample i is requested with seed SEED+i")
    retries: int = Field(2, ge=0, description="retries per request")
    timeout: float = Field(600.0, gt=0, description="seconds per request")

    @field_validator("grader")
    @classmethod
    def _known_grader(cls, name: str) -> str:
        from k15.grading import get_grader

        get_grader(name)
        return name

    @field_validator("prompt_template")
    @classmethod
    def _one_field(cls, template: str) -> str:
        try:
            template.format(problem="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"prompt-template: bad field {exc} (only {{problem}}; {{{{}}}} for braces)") from None
        if "{problem}" not in template:
            raise ValueError("prompt-template must contain {problem}")
        return template

    def problems(self) -> list[Problem]:
        from k15.train.data.formats import load_problems

        return load_problems(self.input, self.grader, self.prompt_template, self.problem_field, self.answer_field)

    def teacher(self) -> Endpoint:
        from k15.train.data.warmup import Endpoint

        return Endpoint(self.endpoint, self.api_key or os.environ.get("OPENAI_API_KEY"), self.model, self.concurrency,
                        self.timeout, self.retries, self.seed)  # fmt: skip


class WarmupConfig(TeacherDataConfig):
    k: int = Field(4, ge=1, description="samples per problem")
    max_tokens: int = Field(8192, ge=1, description="per sample")
    keep_per_problem: int = Field(1, ge=1, description="verified samples kept")
    system_prompt: str | None = Field(None, description="teacher system prompt (None: a long-CoT one; '' sends none)")


class CurateConfig(TeacherDataConfig):
    k: int = Field(8, ge=1, description="samples per problem")
    max_tokens: int = Field(4096, ge=1, description="per sample")
    hack_tries: int = Field(8, ge=0, description="direct-answer tries (0: skip the check)")
    hack_max_tokens: int = Field(64, ge=1, description="per direct answer")


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def level_list(text: str) -> list[int]:
    """``--levels`` as an argparse type: "1,2" → [1, 2]."""
    try:
        return [int(level) for level in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated level numbers such as 1,2, got {text!r}") from None


def host_list(text: str) -> list[str]:
    """``--allow`` as an argparse type: "a.org, b.org" → ["a.org", "b.org"]."""
    return [host.strip().lower() for host in text.split(",") if host.strip()]


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _config_flags(parser: argparse.ArgumentParser, cls: type[TeacherDataConfig]) -> None:
    """``--config`` / ``--set`` and one flag per config key (``--max-tokens`` sets ``max_tokens``); a flag given
    wins over the file."""
    config_args(parser)
    for name, field in cls.model_fields.items():
        flag = "-k" if name == "k" else "--" + name.replace("_", "-")
        default = field.default if field.default is not PydanticUndefined else None
        parser.add_argument(flag, dest=f"flag_{name}", default=argparse.SUPPRESS, metavar=name.upper(),
                            help=f"{field.description or name} (config key {name}; default {default!r})")  # fmt: skip


def _load(cls: type[C], args: argparse.Namespace) -> C:
    flags = {k.removeprefix("flag_"): v for k, v in vars(args).items() if k.startswith("flag_")}
    return load_config(cls, args.config, args.overrides, flags)


def add_data_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``data`` with its ``demo``, ``warmup``, ``curate``, ``render`` and ``fetch-images`` commands (dest
    ``data_command``) to ``sub``."""
    data = sub.add_parser("data", help="build training data: demo splits, long-CoT warmup SFT data, curated prompts, "
                          "image prompts")  # fmt: skip
    commands = data.add_subparsers(dest="data_command", required=True)

    demo = commands.add_parser("demo", help="write a CPU demo task: train, heldout and sft JSONL")
    demo.add_argument("out_dir", metavar="OUT_DIR", help="directory for train.jsonl, heldout.jsonl, sft.jsonl")
    demo.add_argument("--train", type=_count(0), default=2000, help="RL training problems (default 2000)")
    demo.add_argument("--heldout", type=_count(0), default=200, help="held-out problems (default 200)")
    demo.add_argument("--sft", type=_count(0), default=500, help="SFT traces (default 500)")
    demo.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    demo.add_argument("--task", choices=DEMO_TASKS, default="arith",
                      help="arith: arithmetic word problems; countdown: search traces (default arith)")  # fmt: skip
    demo.add_argument("--levels", type=level_list, default=None,
                      help="difficulty levels to draw, e.g. 1,2 (default: all of the task's levels)")  # fmt: skip

    warmup = commands.add_parser("warmup", help="long-CoT SFT data by rejection sampling from a teacher endpoint")
    _config_flags(warmup, WarmupConfig)
    curate = commands.add_parser("curate", help="difficulty by pass rate; drop hackable and unverifiable items")
    _config_flags(curate, CurateConfig)

    render = commands.add_parser("render", help="text-rendered data: draw a prompt set's problems as image prompts")
    render.add_argument("input", metavar="INPUT", help="prompt-set JSONL (problem and answer fields)")
    render.add_argument("out_dir", metavar="OUT_DIR", help="for images/<id>.png and INPUT's name as JSONL; a rerun "
                        "keeps the images drawn")  # fmt: skip
    render.add_argument("--limit", type=_count(1), default=None, help="the first N usable problems (default all)")
    render.add_argument("--width", type=_count(128), default=768, help="image width in pixels (default 768)")
    render.add_argument("--font-size", type=_count(6), default=24, help="in pixels (default 24)")

    fetch = commands.add_parser("fetch-images", help="download the http(s) images of allow-listed hosts that rows "
                                "name, so training can use the rows")  # fmt: skip
    fetch.add_argument("input", metavar="INPUT", help="JSONL whose rows carry images or image")
    fetch.add_argument("out_dir", metavar="OUT_DIR", help="for images/<hash>.<ext> and INPUT's name as JSONL; a rerun "
                       "reuses the images downloaded")  # fmt: skip
    fetch.add_argument("--allow", required=True, type=host_list, metavar="HOST[,HOST...]",
                       help="hosts to download images from; a row with another host is skipped")  # fmt: skip
    fetch.add_argument("--max-bytes", type=_count(1), default=20_000_000,
                       help="largest image downloaded (default 20000000)")  # fmt: skip
    fetch.add_argument("--timeout", type=_positive, default=30.0, help="seconds per download (default 30)")


def cmd_demo(args: argparse.Namespace) -> int:
    from k15.jsonl import read_rows
    from k15.train.data import demo_splits

    splits = demo_splits(args.task)(args.out_dir, args.train, args.heldout, args.sft, args.seed, args.levels)
    for name, path in splits.items():
        print(f"{name:<8} {len(read_rows(path)[0]):>6} rows  {path}")
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    from k15.train.data.warmup import SYSTEM_PROMPT, warmup

    cfg = _load(WarmupConfig, args)
    system_prompt = SYSTEM_PROMPT if cfg.system_prompt is None else cfg.system_prompt
    warmup(cfg.problems(), cfg.output, cfg.teacher(), k=cfg.k, temperature=cfg.temperature,
           max_tokens=cfg.max_tokens, keep_per_problem=cfg.keep_per_problem, system_prompt=system_prompt)  # fmt: skip
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from k15.train.data.curate import curate

    cfg = _load(CurateConfig, args)
    curate(cfg.problems(), cfg.output, cfg.teacher(), problem_field=cfg.problem_field, k=cfg.k,
           temperature=cfg.temperature, max_tokens=cfg.max_tokens, hack_tries=cfg.hack_tries,
           hack_max_tokens=cfg.hack_max_tokens)  # fmt: skip
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from k15.train.data.render import render_prompt_set

    render_prompt_set(args.input, args.out_dir, limit=args.limit, width=args.width, font_size=args.font_size)
    return 0


def cmd_fetch_images(args: argparse.Namespace) -> int:
    from k15.train.data.fetch_images import fetch_images

    fetch_images(args.input, args.out_dir, args.allow, max_bytes=args.max_bytes, timeout=args.timeout)
    return 0


DATA_COMMANDS: dict[tuple[str, ...], Callable[[argparse.Namespace], int]] = {
    ("data", "demo"): cmd_demo,
    ("data", "warmup"): cmd_warmup,
    ("data", "curate"): cmd_curate,
    ("data", "render"): cmd_render,
    ("data", "fetch-images"): cmd_fetch_images,
}
