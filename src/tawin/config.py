"""Typed configuration: frozen dataclasses per stage, YAML files, command-line overrides.

Precedence: dataclass defaults < YAML file < ``--set section.field=value`` overrides. Every
problem (unknown key, with a did-you-mean suggestion; wrong type; impossible value) is collected
and reported at once in one :class:`ConfigError` before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from tawin.errors import ConfigError


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, path: str, problems: list[str]) -> Any:
    """Convert `value` to `annotation`, appending a message to `problems` when it cannot."""
    origin = get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping of {annotation.__name__} fields, got {value!r}")
            return None
        return _build(annotation, value, path, problems)
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            trial: list[str] = []
            result = _coerce(value, option, path, trial)
            if not trial:
                return result
        problems.append(f"{path}={value!r} does not fit {_describe(annotation)}")
        return None
    if origin is Literal:
        choices = get_args(annotation)
        if value not in choices:
            problems.append(f"{path}={value!r} is not one of {list(choices)}")
        return value
    if origin is tuple:
        item_types = get_args(annotation)
        if isinstance(value, (int, float, str)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}={value!r} must be a list")
            return None
        item_type = item_types[0] if item_types else Any
        return tuple(_coerce(v, item_type, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        problems.append(f"{path}={value!r} must be true or false")
        return None
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.lstrip("-").isdigit()):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            problems.append(f"{path}={value!r} must be an integer")
            return None
        return int(value)
    if annotation is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            problems.append(f"{path}={value!r} must be a number")
            return None
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append(f"{path}={value!r} must be a string")
            return None
        return str(value)
    return value


def _describe(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _build(cls, data: dict, prefix: str, problems: list[str]):
    types_by_name = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in types_by_name:
            close = difflib.get_close_matches(key, list(types_by_name), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {sorted(types_by_name)}"
            problems.append(f"{path}: unknown key{hint}")
            continue
        kwargs[key] = _coerce(value, types_by_name[key], path, problems)
    if problems:
        return None
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value (e.g. sft.epochs=3)")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def merge_override(data: dict, keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {key} is not a section")
    node[keys[-1]] = value


def load_config(cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: dict | None = None):
    """Build `cls` from defaults, an optional YAML file and ``key=value`` overrides."""
    data: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file (see configs/ for examples).")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error}).") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections.")
        data = _deep_merge(data, loaded)
    for text in overrides:
        keys, value = parse_override(text)
        merge_override(data, keys, value)
    problems: list[str] = []
    config = _build(cls, data, "", problems)
    if problems:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{where}: " + "; ".join(problems) + ". Fix these keys in the YAML file or the --set overrides.")
    problems = validate(config)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems) + ".")
    return config


def validate(config) -> list[str]:
    """Run every ``check()`` method of the config tree; returns all problems found."""
    problems: list[str] = []
    check = getattr(config, "check", None)
    if callable(check):
        problems.extend(check())
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            problems.extend(validate(value))
    return problems


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def to_dict(config) -> dict:
    def convert(value):
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value
    return convert(dataclasses.asdict(config))


def dump_yaml(config, path: Path) -> None:
    """Save the resolved config next to an output (atomic write)."""
    from tawin.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
