"""Typed configuration: YAML files plus ``key.path=value`` overrides, validated by pydantic.

Every command reads its settings through :func:`load_config`, so a bad value is reported the same way
everywhere: the file (or ``--set``), the dotted key, and what was expected.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and why."""


class Config(BaseModel):
    """Base of every k15 config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


C = TypeVar("C", bound=Config)


@functools.cache
def partial(cls: type[Config]) -> type[Config]:
    """``cls`` with every key optional (nested sections too): the type of a config section that sets some of
    ``cls``'s keys while its owner fixes the rest (a pipeline stage, a method's trainer). Unknown keys and wrong
    types fail when the owner is loaded, named by their full path; :func:`merged` builds the real ``cls``."""
    fields: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Config):
            annotation = partial(annotation)
        fields[name] = (typing.Optional[annotation], None)  # noqa: UP045  (built at run time)
    return create_model(f"Partial{cls.__name__}", __base__=Config, __doc__=f"Some keys of {cls.__name__}.", **fields)


def merged(cls: type[C], section: Config, fixed: dict[str, Any], label: str) -> C:
    """``cls`` from the keys set in ``section`` (a :func:`partial` of it) plus ``fixed``; an error names
    ``label.key``. A key set to null is not set (its default holds), as a stage's written-out config has it."""
    try:
        return cls.model_validate({**section.model_dump(exclude_unset=True, exclude_none=True), **fixed})
    except ValidationError as exc:
        errors = [f"{'.'.join([label, *map(str, e['loc'])])}: {e['msg'].removeprefix('Value error, ')}"
                  for e in exc.errors()]  # fmt: skip
        raise ValueError("; ".join(errors)) from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and a YAML-typed value (``8000`` is an int, ``[1,2]`` a list)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. --set server.port=8000")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _set_path(data: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: key '{'.'.join(path[: i + 1])}' is a value, not a section")
        node = child
    node[path[-1]] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _describe(error: dict[str, Any], file_label: str, overridden: set[str]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    origin = "--set" if key in overridden else file_label
    if error["type"] == "extra_forbidden":
        return f"{origin}: key '{key}': unknown key"
    if error["type"] == "missing":
        return f"{origin}: key '{key}': required but missing"
    if error["type"] == "value_error":  # a check across keys (the message names them); the input may be huge
        where = "" if key == "(top level)" else f"key '{key}': "
        return f"{origin}: {where}{error['msg'].removeprefix('Value error, ')}"
    return f"{origin}: key '{key}': {error['msg']} (got {error['input']!r})"


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = (),
                flags: Mapping[str, Any] | None = None) -> C:  # fmt: skip
    """Build ``cls`` from defaults, then the YAML file at ``path``, then ``overrides`` (``key.path=value``), then
    ``flags`` (top-level key → value as given on a command line, not read as YAML)."""
    data = _read_yaml(Path(path)) if path else {}
    overridden = set()
    for item in overrides:
        keys, value = parse_override(item)
        _set_path(data, keys, value, f"--set {item!r}")
        overridden.add(".".join(keys))
    data.update(flags or {})
    overridden |= set(flags or {})
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        label = str(path) if path else "defaults"
        lines = [_describe(e, label, overridden) for e in exc.errors()]
        allowed = ", ".join(sorted(cls.model_fields))
        raise ConfigError("\n".join(lines) + f"\n(top-level keys of {cls.__name__}: {allowed})") from None
