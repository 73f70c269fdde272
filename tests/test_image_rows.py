"""Rows with images (prompt sets, SFT traces, DPO pairs), MathVista rows as an RL prompt set, ``k15 data render``
(text-rendered data graded by the source task's grader) and ``k15 data fetch-images`` (allow-listed remote images
downloaded for training). CPU only, no engine."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from k15.app.cli import main as k15_main
from k15.grading import grade
from k15.grading.mathvista import option_letters
from k15.images import url_problem
from k15.net import free_port
from k15.train.data.countdown import generate as countdown_rows
from k15.train.data.formats import DataFileError, load_preference_pairs, load_problems, load_sft_examples
from k15.train.data.render import RENDER_PROMPT, render_text, wrap
from tests.conftest import SHARED_DATA, run_k15


def png(color: str = "red", size: tuple[int, int] = (16, 16), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data folder with one image under ``img/`` and a corrupt ``img/broken.png``."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png())
    (tmp_path / "img" / "broken.png").write_bytes(b"not an image at all")
    return tmp_path


def test_prompt_rows_carry_resolved_images(data_dir: Path) -> None:
    url = data_url(png("blue"))
    path = write_rows(data_dir / "p.jsonl", [
        {"id": "file", "problem": "1+1?", "answer": "2", "images": ["img/a.png"]},
        {"id": "data", "problem": "2+2?", "answer": "4", "image": url},
        {"id": "two", "problem": "3+3?", "answer": "6", "images": [url, "img/a.png"]},
        {"id": "text", "problem": "4+4?", "answer": "8"},
    ])  # fmt: skip
    problems = {p.id: p for p in load_problems(path)}
    assert problems["file"].images == (str((data_dir / "img" / "a.png").resolve()),)
    assert problems["data"].images == (url,)
    assert problems["two"].images == (url, str((data_dir / "img" / "a.png").resolve()))
    assert problems["text"].images == () and problems["text"].text == "4+4?", "text rows are as before"


def test_sft_and_dpo_rows_carry_images(data_dir: Path) -> None:
    sft = write_rows(data_dir / "sft.jsonl", [
        {"prompt": "What is shown?", "response": "A red square.", "images": ["img/a.png"]},
        {"prompt": "Say hi.", "response": "hi"},
    ])  # fmt: skip
    examples = load_sft_examples(sft)
    assert [(e.prompt, e.response, e.images) for e in examples] == [
        ("What is shown?", "A red square.", (str((data_dir / "img" / "a.png").resolve()),)),
        ("Say hi.", "hi", ()),
    ]
    url = data_url(png("green"))
    dpo = write_rows(data_dir / "nested" / "dpo.jsonl", [
        {"prompt": "Color?", "chosen": "green", "rejected": "red", "images": [url, "../img/a.png"]},
        {"prompt": "Where?", "chosen": "here", "rejected": "there", "image": "../img/a.png"},
    ])  # fmt: skip
    pairs = load_preference_pairs(dpo)
    assert pairs[0].images == (url, str((data_dir / "img" / "a.png").resolve())), "relative to the JSONL's folder"
    assert pairs[1].images == (str((data_dir / "img" / "a.png").resolve()),) and pairs[1].chosen == "here"


def test_bad_images_are_reported_with_file_and_line_and_skipped(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_rows(data_dir / "p.jsonl", [
        {"id": "ok", "problem": "1+1?", "answer": "2", "images": ["img/a.png"]},
        {"id": "missing", "problem": "2+2?", "answer": "4", "images": ["img/nowhere.png"]},
        {"id": "corrupt", "problem": "3+3?", "answer": "6", "image": "img/broken.png"},
        {"id": "bad-data", "problem": "4+4?", "answer": "8", "images": ["data:image/png;base64,bm90IGFuIGltYWdl"]},
        {"id": "scheme", "problem": "5+5?", "answer": "10", "images": ["file:///etc/passwd"]},
        {"id": "type", "problem": "6+6?", "answer": "12", "images": [3]},
        {"id": "both", "problem": "7+7?", "answer": "14", "images": ["img/a.png"], "image": "img/a.png"},
        {"id": "web", "problem": "8+8?", "answer": "16", "images": ["https://example.com/x.png"]},
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        problems = load_problems(path)
    assert [p.id for p in problems] == ["ok"]
    for line, why in ((2, "image 'img/nowhere.png': not found"), (3, "image 'img/broken.png': not an image"),
                      (4, "image 'data:image/png;base64,bm90IGFuIGltYWdl': not an image"), (5, "image URL scheme 'file' is not supported"),
                      (6, "'images' must be a list"), (7, "both 'images' and 'image'"),
                      (8, "image 'https://example.com/x.png': training does not fetch remote images")):  # fmt: skip
        assert f"{path}:{line}: skipped: {why}" in caplog.text
    only_bad = write_rows(data_dir / "bad.jsonl", [{"prompt": "p", "response": "r", "images": ["img/broken.png"]}])
    with pytest.raises(DataFileError, match=r"bad\.jsonl: no usable example \(1 rows skipped\)"):
        load_sft_examples(only_bad)


def test_serving_and_training_share_the_url_rules() -> None:
    assert url_problem("data:image/png;base64,AAAA") is None
    assert url_problem("data:text/plain;base64,aGk=") == "image data URL must be data:image/<type>;base64,…"
    assert url_problem("https://example.com/a.png") is None, "any host unless an allow-list is given"
    assert url_problem("https://example.com/a.png", ["example.com"]) is None
    assert url_problem("http://169.254.169.254/x", []) == "image host '169.254.169.254' is not on the allow-list " \
        "(image_url_allowlist)"  # fmt: skip
    assert url_problem("ftp://x/y.png") == "image URL scheme 'ftp' is not supported"
    assert "not a valid URL" in (url_problem("http://[::1/x.png") or "")


def test_mathvista_rows_are_an_rl_prompt_set(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The evalsuite's MathVista rows (``query``, one ``image`` beside the JSONL) load as RL prompts with their image;
    the shared copy has no image files, so its first rows are copied with images drawn for all but one."""
    from k15.evalsuite.tasks.mathvista import MATHVISTA

    source = SHARED_DATA / "mathvista" / "testmini.jsonl"
    if not source.is_file():
        pytest.skip(f"MathVista data not found at {source} (shared/data is absent)")
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()[:4]]
    path = write_rows(tmp_path / "mathvista" / "testmini.jsonl", rows)
    for row in rows[:3]:
        image = tmp_path / "mathvista" / row["image"]
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(png(size=(32, 24), fmt="JPEG"))
    with caplog.at_level(logging.WARNING):
        problems = load_problems(path, grader="mathvista", problem_field="query")
    assert [p.id for p in problems] == [r["pid"] for r in rows[:3]]
    assert f"{path}:4: skipped: image '{rows[3]['image']}': not found" in caplog.text
    items = {item.id: item for item in MATHVISTA.items(tmp_path)}
    for problem, row in zip(problems, rows[:3], strict=True):
        assert problem.text == row["query"] and problem.grader == "mathvista"
        (image,) = problem.images
        assert Path(image).read_bytes() == items[problem.id].image, "the image evalsuite sends for this row"
        gold = row["answer"]
        if row["question_type"] == "multi_choice":
            gold = option_letters(row["choices"])[row["choices"].index(gold)]
        assert grade("mathvista", f"The answer is {gold}", problem.record).correct


def test_long_words_wrap_within_the_width() -> None:
    from PIL import ImageFont

    font = ImageFont.load_default(size=20)
    lines = wrap("short words then " + "z" * 300 + "\n\nnext paragraph", font, 200)
    assert all(font.getlength(line) <= 200 for line in lines)
    assert "".join(lines).count("z") == 300 and lines[-2:] == ["", "next paragraph"]
    assert render_text("one line", width=300, font_size=20).width == 300
    assert render_text("one line", font_size=40).height > render_text("one line", font_size=20).height


def countdown_set(path: Path, count: int) -> Path:
    return write_rows(path, countdown_rows(count, seed=3, levels=[1, 2]))


def test_render_makes_an_image_prompt_set_graded_like_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = countdown_set(tmp_path / "src" / "train.jsonl", 5)
    out = tmp_path / "vision"
    assert k15_main(["data", "render", str(source), str(out), "--limit", "4", "--width", "512"]) == 0
    assert "render: 4 image prompts" in capsys.readouterr().out
    rendered = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    originals = [json.loads(line) for line in source.read_text().splitlines()][:4]
    for row, original in zip(rendered, originals, strict=True):
        assert row["problem"] == RENDER_PROMPT and row["images"] == [f"images/{original['id']}.png"]
        assert {k: v for k, v in row.items() if k not in ("problem", "images")} == \
            {k: v for k, v in original.items() if k != "problem"}, "grader and grader fields unchanged"  # fmt: skip
        with Image.open(out / row["images"][0]) as image:
            image.load()
            assert image.format == "PNG" and image.width == 512
    sources = load_problems(source)[:4]
    images = load_problems(out / "train.jsonl")
    for src, img in zip(sources, images, strict=True):
        assert (
            img.images == (str((out / "images" / f"{src.id}.png").resolve()),)
            and img.grader == src.grader == "countdown"
        )
        for response in (f"The answer is $\\boxed{{{src.record['answer']}}}$.", "The answer is $\\boxed{1+1}$."):
            verdict = grade(src.grader, response, src.record).correct
            assert grade(img.grader, response, img.record).correct == verdict
        assert grade(img.grader, f"\\boxed{{{src.record['answer']}}}", img.record).correct


def test_render_rerun_keeps_drawn_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = countdown_set(tmp_path / "train.jsonl", 3)
    out = tmp_path / "vision"
    assert k15_main(["data", "render", str(source), str(out), "--limit", "2"]) == 0
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "images").iterdir()}
    assert len(before) == 2
    capsys.readouterr()
    assert k15_main(["data", "render", str(source), str(out)]) == 0
    assert "(1 drawn, 2 already there)" in capsys.readouterr().out
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "images").iterdir()}
    assert len(after) == 3 and all(after[name] == stamp for name, stamp in before.items())
    assert len(load_problems(out / "train.jsonl")) == 3


def test_render_bad_input_is_one_line_and_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.jsonl"
    assert k15_main(["data", "render", str(missing), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"k15: error: {missing}: not found\n"
    empty = write_rows(tmp_path / "empty.jsonl", [{"problem": "no answer"}])
    assert k15_main(["data", "render", str(empty), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"k15: error: {empty}: no usable problem" in err and "Traceback" not in err
    assert k15_main(["data", "render", str(empty), str(tmp_path)]) == 2
    assert "the output would replace the input" in capsys.readouterr().err


def test_render_keeps_a_rows_own_figures_after_the_text(data_dir: Path) -> None:
    from k15.train.data.render import RENDER_PROMPT_WITH_FIGURES, render_prompt_set

    source = write_rows(data_dir / "fig.jsonl", [
        {"id": "t/1", "problem": "What is the area of the square in the figure?", "answer": "4", "image": "img/a.png"},
    ])  # fmt: skip
    output = render_prompt_set(source, data_dir / "out")
    (problem,) = load_problems(output)
    rendered = str((data_dir / "out" / "images" / "t_1.png").resolve())
    assert problem.images == (rendered, str((data_dir / "img" / "a.png").resolve()))
    assert problem.text == RENDER_PROMPT_WITH_FIGURES and problem.id == "t/1"


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 with ``a.png``, ``notes.png`` (text) and ``/away`` (a redirect off the host);
    yields its base URL and the paths requested."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.png").write_bytes(png("green"))
    (served / "notes.png").write_bytes(b"plain text, not an image")
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self) -> None:
            requested.append(self.path)
            if self.path == "/away":
                self.send_response(302)
                self.send_header("Location", "http://example.invalid/y.png")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", requested
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_images_downloads_allow_listed_images(
    data_dir: Path,
    image_server: tuple[str, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, requested = image_server
    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    inline = data_url(png("blue"))
    source = write_rows(data_dir / "web.jsonl", [
        {"id": "good", "problem": "1+1?", "answer": "2", "images": [f"{base}/a.png", "img/a.png"]},
        {"id": "host", "problem": "2+2?", "answer": "4", "images": ["http://example.invalid/x.png"]},
        {"id": "404", "problem": "3+3?", "answer": "6", "image": f"{base}/gone.png"},
        {"id": "text", "problem": "4+4?", "answer": "8", "images": [f"{base}/notes.png"]},
        {"id": "away", "problem": "5+5?", "answer": "10", "images": [f"{base}/away"]},
        {"id": "same", "problem": "6+6?", "answer": "12", "image": f"{base}/a.png"},
        {"id": "inline", "problem": "7+7?", "answer": "14", "images": [inline]},
    ])  # fmt: skip
    out = data_dir / "out"
    assert k15_main(["data", "fetch-images", str(source), str(out), "--allow", "127.0.0.1"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    for line, why in ((2, "image 'http://example.invalid/x.png': image host 'example.invalid' is not on the "
                          "allow-list (--allow)"),
                      (3, f"image '{base}/gone.png': HTTP 404"), (4, f"image '{base}/notes.png': not an image"),
                      (5, "redirected to 'http://example.invalid/y.png'")):  # fmt: skip
        assert f"{source}:{line}: skipped: {why}" in text
    assert "fetch-images: 3 rows" in captured.out and "(1 images downloaded, 0 already there; 4 rows skipped)" in text
    assert "example.invalid" not in looked_up, "a host not on the allow-list is never contacted"
    assert sorted(requested) == ["/a.png", "/away", "/gone.png", "/notes.png"], "each URL is requested once"

    problems = {p.id: p for p in load_problems(out / "web.jsonl")}
    assert list(problems) == ["good", "same", "inline"]
    (downloaded,) = (out / "images").iterdir()
    assert downloaded.name == hashlib.sha256(f"{base}/a.png".encode()).hexdigest()[:16] + ".png"
    assert downloaded.read_bytes() == png("green")
    assert problems["good"].images == (str(downloaded.resolve()), str((data_dir / "img" / "a.png").resolve()))
    assert problems["same"].images == (str(downloaded.resolve()),) and problems["inline"].images == (inline,)
    rows = [json.loads(line) for line in (out / "web.jsonl").read_text().splitlines()]
    assert rows[0]["images"] == [f"images/{downloaded.name}", "../img/a.png"]
    assert rows[1]["image"] == rows[0]["images"][0]

    requested.clear()
    assert k15_main(["data", "fetch-images", str(source), str(out), "--allow", "127.0.0.1"]) == 0
    assert "(0 images downloaded, 1 already there; 4 rows skipped)" in capsys.readouterr().out
    assert "/a.png" not in requested, "a rerun reuses the images downloaded"
    assert [p.id for p in load_problems(out / "web.jsonl")] == ["good", "same", "inline"]


def test_fetch_images_bad_input_is_one_line_and_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.jsonl"
    result = run_k15("data", "fetch-images", str(missing), str(tmp_path / "out"), "--allow", "example.com")
    assert result.returncode == 2 and result.stderr == f"k15: error: {missing}: not found\n"
    source = write_rows(tmp_path / "p.jsonl", [{"problem": "1+1?", "answer": "2", "image": "https://example.com/a"}])
    assert k15_main(["data", "fetch-images", str(source), str(tmp_path / "out"), "--allow", " , "]) == 2
    err = capsys.readouterr().err
    assert err.startswith("k15: error: --allow: give at least one host") and "Traceback" not in err
    assert not (tmp_path / "out").exists()
