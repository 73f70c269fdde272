"""Text-rendered data (Kimi k1.5 §2.3, vision data): a text prompt set drawn as images, so a verifiable text task
becomes a vision task graded by the same grader.

``render_prompt_set`` draws each problem's text onto a PNG, ``<out>/images/<id>.png``, and writes
``<out>/<name>.jsonl``: the source rows with the problem replaced by :data:`RENDER_PROMPT` and the image in
``images``; the grader and every other field stay as they were. A rerun keeps the images already drawn.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from k15.jsonl import write_rows
from k15.train.data.formats import load_problems

if TYPE_CHECKING:
    from PIL import Image, ImageFont

RENDER_PROMPT = "Solve the problem shown in the image."
RENDER_PROMPT_WITH_FIGURES = "Solve the problem shown in the first image; the other images are its figures."
_PROGRESS_EVERY = 100


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """``text`` in lines no wider than ``max_width`` pixels: its own line breaks kept, words moved to the next line,
    a word wider than a line split."""
    lines = []
    for paragraph in text.replace("\t", "    ").splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = word
            while len(line) > 1 and font.getlength(line) > max_width:
                cut = _fitting(line, font, max_width)
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def _fitting(word: str, font: ImageFont.FreeTypeFont, max_width: float) -> int:
    """How many leading characters of ``word`` fit in ``max_width`` pixels (at least one)."""
    n = 1
    while n < len(word) and font.getlength(word[: n + 1]) <= max_width:
        n += 1
    return n


def render_text(text: str, width: int = 768, font_size: int = 24) -> Image.Image:
    """``text`` drawn black on white in Pillow's default font at ``font_size``, wrapped to an image ``width``
    pixels wide, as tall as the text needs."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    margin = font_size
    ascent, descent = font.getmetrics()
    line_height = ascent + descent + font_size // 4
    lines = wrap(text, font, width - 2 * margin)
    image = Image.new("RGB", (width, 2 * margin + line_height * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_height), line, fill="black", font=font)
    return image


def _file_stem(ident: str, used: set[str]) -> str:
    """A file name for problem ``ident``: unsafe characters replaced, a clash with an earlier one numbered."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", ident) or "problem"
    base, n = stem, 1
    while stem in used:
        n += 1
        stem = f"{base}-{n}"
    used.add(stem)
    return stem


def render_prompt_set(
    source: str | Path, out_dir: str | Path, *, limit: int | None = None, width: int = 768, font_size: int = 24
) -> Path:
    """Render the prompt set ``source`` (its first ``limit`` usable problems) into ``out_dir``; returns the JSONL
    written, named as ``source``. Images already in ``out_dir/images`` are kept, not redrawn."""
    source, out = Path(source), Path(out_dir)
    output = out / source.name
    if output.resolve() == source.resolve():
        raise ValueError(f"{source}: the output would replace the input; give another OUT_DIR")
    problems = load_problems(source, prompt_template="{problem}")[:limit]
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, used, drawn = [], set(), 0
    for i, problem in enumerate(problems, 1):
        name = f"images/{_file_stem(problem.id, used)}.png"
        if not (out / name).is_file():
            tmp = out / "images" / f".{uuid.uuid4().hex}.tmp"
            try:
                render_text(problem.text, width, font_size).save(tmp, format="PNG")
                os.replace(tmp, out / name)
            finally:
                tmp.unlink(missing_ok=True)
            drawn += 1
        row = {k: v for k, v in problem.record.items() if k not in ("image", "images")}
        prompt = RENDER_PROMPT_WITH_FIGURES if problem.images else RENDER_PROMPT
        rows.append({**row, "id": problem.id, "problem": prompt, "images": [name, *problem.images]})
        if i % _PROGRESS_EVERY == 0:
            print(f"render: {i}/{len(problems)} problems ({drawn} images drawn)", flush=True)
    write_rows(output, rows)
    print(f"render: {len(rows)} image prompts in {output} ({drawn} drawn, {len(rows) - drawn} already there)")
    return output
