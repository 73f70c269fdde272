from pathlib import Path

import pytest

from k15.config import ConfigError, load_config
from k15.serve.config import ServeConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_file_and_overrides_layer(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9000\nengine:\n  max_model_len: 1024\n")
    cfg = load_config(ServeConfig, path, ["engine.enforce_eager=true", "names.long=thinker"])
    assert cfg.port == 9000
    assert cfg.engine.max_model_len == 1024
    assert cfg.engine.enforce_eager is True
    assert cfg.names.long == "thinker"
    assert cfg.host == "127.0.0.1"  # default kept


def test_override_beats_file(tmp_path: Path) -> None:
    cfg = load_config(ServeConfig, write(tmp_path, "port: 9000\n"), ["port=9001"])
    assert cfg.port == 9001


def test_wrong_type_names_file_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "engine:\n  max_model_len: lots\n")
    with pytest.raises(ConfigError) as err:
        load_config(ServeConfig, path)
    message = str(err.value)
    assert str(path) in message
    assert "engine.max_model_len" in message
    assert "integer" in message and "'lots'" in message


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'engine.max_len': unknown key"):
        load_config(ServeConfig, write(tmp_path, "engine:\n  max_len: 5\n"))


def test_bad_override_is_attributed_to_set() -> None:
    with pytest.raises(ConfigError, match=r"--set: key 'port': .*less than or equal to 65535"):
        load_config(ServeConfig, None, ["port=70000"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(ServeConfig, None, ["port"])


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(ServeConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(ServeConfig, write(tmp_path, "port: [1,\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(ServeConfig, write(tmp_path, "- 1\n- 2\n"))


def test_shipped_configs_are_valid() -> None:
    from k15.app.demo import DemoConfig

    repo = Path(__file__).resolve().parent.parent
    load_config(DemoConfig, repo / "configs" / "demo.yaml")
    load_config(ServeConfig, repo / "configs" / "serve.yaml")


def test_a_written_out_partial_section_merges_back(tmp_path: Path) -> None:
    """A pipeline stage writes its config with every partial key, unset ones as null; loading and merging it
    gives the keys that were set and the defaults for the rest (the long2short shortest stage of make demo)."""
    import json

    import yaml

    from k15.app.pipeline import LongCoTPipelineConfig
    from k15.train.sft import SFTConfig

    pipeline = LongCoTPipelineConfig.model_validate(
        {"long2short": {"methods": ["shortest"], "shortest": {"sft": {"epochs": 2, "deepspeed": {"lr": 2e-5}}}}}
    )
    stage = pipeline.long2short_config("shortest")
    written = tmp_path / "stage.yaml"
    written.write_text(yaml.safe_dump(json.loads(stage.model_dump_json())))
    assert "state_every: null" in written.read_text()
    loaded = load_config(type(stage), written)
    sft = loaded.trainer_config()  # type: ignore[attr-defined]
    assert (sft.epochs, sft.deepspeed.lr) == (2, 2e-5)
    assert sft.state_every == SFTConfig.model_fields["state_every"].default
