"""Bad configs and data, everywhere: for every command, a missing config file, an unknown key, a wrong type and a
checkpoint that is not a model each give one ``error:`` line naming what is wrong, exit status 2, no traceback, and
write nothing (run in-process through the real CLI entry points)."""

from __future__ import annotations

from pathlib import Path

import pytest

from k15.app.cli import main as k15_main
from k15.evalsuite.cli import main as evalsuite_main
from tests.conftest import SHARED_DATA

COMMANDS = [["serve"], ["ui"], ["train", "sft"], ["train", "rl"], ["train", "long-cot"],
            ["train", "long2short", "--method", "merge"], ["train", "long2short", "--method", "dpo"],
            ["data", "warmup"], ["data", "curate"], ["demo"]]  # fmt: skip


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "unknown.yaml").write_text("bogus_key: 1\n")
    (tmp_path / "wrong-type.yaml").write_text("seed: many\n")
    (tmp_path / "not-yaml.yaml").write_text("a: [1, 2\n")
    return {"missing": tmp_path / "missing.yaml", "unknown": tmp_path / "unknown.yaml",
            "wrong type": tmp_path / "wrong-type.yaml", "not YAML": tmp_path / "not-yaml.yaml"}  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_names_a_bad_config_in_one_line(command: list[str], configs: dict[str, Path],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    expected = {"missing": "config file not found", "unknown": "bogus_key", "wrong type": "seed",
                "not YAML": "not-yaml.yaml"}  # fmt: skip
    before = sorted(tmp_path.rglob("*"))
    for case, path in configs.items():
        assert k15_main([*command, "--config", str(path)]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("k15: error:") and expected[case] in err and "Traceback" not in err, (case, err)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_a_directory_that_is_not_a_model_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "notamodel"
    folder.mkdir()
    (folder / "readme.txt").write_text("hi")
    for argv in (["serve", "--long", str(folder), "--short", str(folder)],
                 ["train", "long2short", "--method", "merge", "--set", f"long={folder}", "--set", f"short={folder}",
                  "--set", f"output_dir={tmp_path / 'out'}"]):  # fmt: skip
        assert k15_main(argv) == 2
        err = capsys.readouterr().err
        assert "not a Hugging Face checkpoint" in err and str(folder) in err and "Traceback" not in err
    assert evalsuite_main(["run", "math500", "--backend", "vllm", "--model-path", str(folder), "--out",
                           str(tmp_path / "eval"), "--data-dir", str(SHARED_DATA)]) == 2  # fmt: skip
    assert "not a Hugging Face checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_empty_data_is_an_error_not_an_empty_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert evalsuite_main(["score", str(empty), "--task", "math500", "--out", str(tmp_path / "graded.jsonl")]) == 2
    assert "no gradable row" in capsys.readouterr().err and not (tmp_path / "graded.jsonl").exists()
    for argv in (["train", "sft", "--set", f"data={empty}", "--set", f"output_dir={tmp_path / 'sft'}"],
                 ["train", "rl", "--set", f"data.path={empty}", "--set", f"output_dir={tmp_path / 'rl'}"]):  # fmt: skip
        assert k15_main(argv) == 2
        assert "no usable" in capsys.readouterr().err
