"""Foundation — what changes a config mapping before it is built: ``--set section.field=value``
overrides, and the old spellings of renamed settings, which keep loading.

A config class may list the old spellings of its settings in ``RENAMED`` (old dotted path → new
dotted path, both relative to the class), and in ``RETIRED`` keys that no longer exist and are
dropped when empty. YAML files, ``--set`` overrides (:func:`tawin.config.load_config`), experiment
files and the config.yaml of folders written by earlier versions keep working: each old spelling
read is moved to its new place with one :class:`RenamedSetting` warning (none for a saved
config.yaml). An old and a new spelling of one setting with different values is an error.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from typing import Any, get_args, get_origin

import yaml

from tawin.errors import ConfigError


def field_types(cls) -> dict[str, Any]:
    """Each field of the dataclass `cls` → its type (string annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


class RenamedSetting(UserWarning):
    """An old spelling of a setting was read: it still works, and the message names the new one."""


_UNSET = object()


def _lookup(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key, _UNSET) if isinstance(tree, dict) else _UNSET
    return tree


def _pop(tree: dict, dotted: str):
    """Remove the leaf `dotted` from `tree` (a copy made by the caller) and return it, or _UNSET;
    a mapping on the way is copied before it changes, and dropped when the removal empties it."""
    *parents, leaf = dotted.split(".")
    if not parents:
        return tree.pop(leaf, _UNSET)
    child = tree.get(parents[0])
    if not isinstance(child, dict):
        return _UNSET
    child = dict(child)
    value = _pop(child, ".".join([*parents[1:], leaf]))
    if value is not _UNSET:
        if child:
            tree[parents[0]] = child
        else:
            del tree[parents[0]]
    return value


def _put(tree: dict, dotted: str, value) -> bool:
    """Set the leaf `dotted` of `tree` (copying the mappings on the way); False where a single value
    stands where a section should."""
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        child = node.get(key, {})
        if not isinstance(child, dict):
            return False
        node[key] = dict(child)
        node = node[key]
    node[leaf] = value
    return True


def rename_old_spellings(
    cls, data: dict, prefix: str, problems: list[str], warn: bool = True, renamed: dict[str, str] | None = None
) -> dict:
    """`data`, a mapping of `cls` fields, with each old spelling of ``cls.RENAMED`` (or of
    `renamed`) moved to its new place (this level only: nested sections are renamed when they are
    built). An old and a new spelling of one setting with different values is a problem; `warn`
    names each new spelling."""
    renamed = getattr(cls, "RENAMED", {}) if renamed is None else renamed
    if not renamed or not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in renamed.items():
        present = _lookup(data, old)
        if present is _UNSET or isinstance(present, dict):
            continue
        given = _lookup(data, new)
        if given is not _UNSET and given != present:
            problems.append(
                f"{prefix}{old}={present!r} and {prefix}{new}={given!r} name the same setting ({prefix}{old} is "
                f"the old spelling of {prefix}{new}); keep only {prefix}{new}"
            )
            _pop(data, old)
            continue
        snapshot = dict(data)
        _pop(data, old)
        if not _put(data, new, present):
            data = snapshot  # a single value stands where the new section goes: reported as such when built
            continue
        if warn:
            _warn_renamed(f"{prefix}{old}", f"{prefix}{new}")
    return data


def _warn_renamed(old: str, new: str) -> None:
    # One place of issue, so that Python's registry shows each message once per process.
    warnings.warn(
        f"{old} is now spelled {new}; the old spelling still works, but write the new one", RenamedSetting, stacklevel=1
    )


def renamed_path(cls, keys: list[str]) -> list[str]:
    """The dotted path `keys` (an override such as ``rl.max_rows``) in its new spelling, section by section."""
    for old, new in getattr(cls, "RENAMED", {}).items():
        old_keys = old.split(".")
        if keys[: len(old_keys)] == old_keys:
            keys = [*new.split("."), *keys[len(old_keys) :]]
            break
    if len(keys) > 1 and dataclasses.is_dataclass(cls):
        annotation = field_types(cls).get(keys[0])
        if dataclasses.is_dataclass(annotation):
            return [keys[0], *renamed_path(annotation, keys[1:])]
    return keys


def in_new_spelling(cls, data: dict, problems: list[str], prefix: str = "", warn: bool = True) -> dict:
    """A mapping of `cls` (a YAML file, or the config.yaml a folder saved) with each old spelling
    moved to its new place, in every nested section and in each item of a tuple of sections; an
    empty mapping under a retired key (``cls.RETIRED``) is dropped. Keys that are no field (a
    folder's `kind` and `provenance`) are left as they are."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(cls):
        return data
    data = rename_old_spellings(cls, data, prefix, problems, warn)
    data = {key: value for key, value in data.items() if not (key in getattr(cls, "RETIRED", ()) and value == {})}
    for name, annotation in field_types(cls).items():
        value, path = data.get(name), f"{prefix}{name}"
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            data[name] = in_new_spelling(annotation, value, problems, f"{path}.", warn)
        elif get_origin(annotation) is tuple and isinstance(value, list) and get_args(annotation):
            data[name] = [
                in_new_spelling(get_args(annotation)[0], item, problems, f"{path}[{i}].", warn)
                for i, item in enumerate(value)
            ]
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise ConfigError(f"override {text!r} must look like section.field=value (e.g. sft.epochs=3)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(
            f"override {text!r}: the value {raw!r} is not valid YAML; "
            "quote it or fix the brackets (e.g. eval.ks=[1,5,10])"
        ) from None
    return key.strip().split("."), value


def merge_override(data: dict, keys: list[str], value: Any) -> None:
    node = data
    for depth, key in enumerate(keys[:-1]):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(
                f"override {'.'.join(keys)}: {'.'.join(keys[: depth + 1])} is a single value, not a section"
            )
    node[keys[-1]] = value


def apply_overrides(cls, data: dict, overrides, problems: list[str], under: tuple[str, ...] = ()) -> None:
    """Merge ``section.field=value`` overrides into `data` (a mapping of `cls` under the keys
    `under`), each in its new spelling; an old and a new spelling of one setting with different
    values is a problem (a setting given twice in one spelling keeps the last, as ever)."""
    spelled: dict[tuple[str, ...], tuple[str, Any]] = {}
    for text in overrides:
        try:
            keys, value = parse_override(text)
        except ConfigError as error:
            problems.append(str(error))
            continue
        new_keys = renamed_path(cls, keys)
        old, new = ".".join(keys), ".".join(new_keys)
        if new_keys != keys:
            _warn_renamed(old, new)
        earlier = spelled.get(tuple(new_keys))
        if earlier is not None and earlier[0] != old and earlier[1] != value:
            problems.append(
                f"--set {earlier[0]}={earlier[1]!r} and --set {old}={value!r} name the same setting "
                f"(the old and the new spelling of {new}); keep only {new}"
            )
        spelled[tuple(new_keys)] = (old, value)
        try:
            merge_override(data, [*under, *new_keys], value)
        except ConfigError as error:
            problems.append(str(error))
