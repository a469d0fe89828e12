"""Orchestration — what changed between the config a run folder saved and a command's, which of
those changes block a resume, and how a refusal names each one (:class:`tawin.run.folder.RunFolder`).

A change blocks unless the setting cannot change a result (:data:`RESULT_NEUTRAL`) or it is a
setting the saved config lacks that this command leaves at its default (one added by a later
tawin version, whose default does what the earlier version did).
"""

from __future__ import annotations

import dataclasses

from tawin.config import to_dict, to_dict_value
from tawin.run.provenance import describe, identity

RESULT_NEUTRAL = ("sft.log_every", "sft.save_every", "rl.log_every", "rl.save_every", "report_to", "small_data")
"""Settings (or whole sections) that change how often a run logs or saves, or where it reports,
never what it computes (a resumed run is bit-identical to an uninterrupted one whatever they are): a
change resumes. `small_data` is among them because what it changes is saved in the other sections."""

REASONS = {
    "threads": "the CPU thread count changes the order of float reductions, so the resumed part would not match",
    "device": "another device computes floats differently, so the resumed part would not match",
    "precision": "another precision computes different numbers",
    "compile": "torch.compile fuses operations and changes float rounding",
    "seed": "another seed draws other samples and initial weights",
}
"""Why a change of these settings is refused, said in the message."""


def blocking_changes(previous: dict, resolved: dict, config, extendable: tuple[str, ...]) -> set[str]:
    """Dotted keys of the saved config `previous` and this command's `resolved` that differ and block
    a resume; keys under the top-level sections in `extendable` never block."""
    changed = _diff_keys(identity(previous), identity(resolved))
    changed = {key for key in changed if key.split(".")[0] not in extendable and not _neutral(key)}
    return changed - _added_at_default(previous, resolved, changed, config)


_UNSET = object()


def _added_at_default(previous: dict, resolved: dict, changed: set[str], config) -> set[str]:
    """The changed keys that the saved config lacks and that this command sets to the field's
    default: settings added by a later tawin version, whose default does what the earlier version
    did, so that a folder written before them still resumes."""
    defaults = _defaults(config)
    return {
        key
        for key in changed
        if _lookup(previous, key) is _UNSET
        and _lookup(defaults, key) is not _UNSET
        and _lookup(defaults, key) == _lookup(resolved, key)
    }


def _defaults(config) -> dict:
    """The default of each field of a config dataclass, as the nested dict of config.yaml (a field
    without a default, e.g. a baseline's method, is left out unless it holds a config itself)."""
    tree = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.default is not dataclasses.MISSING:
            tree[field.name] = to_dict_value(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            made = field.default_factory()
            tree[field.name] = to_dict(made) if dataclasses.is_dataclass(made) else to_dict_value(made)
        elif dataclasses.is_dataclass(value):
            tree[field.name] = _defaults(value)
    return tree


def _neutral(key: str) -> bool:
    """True for a neutral setting, or a field of a neutral section, at any depth (`base.` in an experiment)."""
    return any(f".{name}." in f".{key}." for name in RESULT_NEUTRAL)


def describe_change(previous: dict, resolved: dict, key: str) -> str:
    """One changed key for the refusal: old → new, with the reason where a setting's effect is not obvious."""
    if key.startswith("provenance.") and key.endswith(".sha256"):
        name = key[: -len(".sha256")]
        return f"{name}: {describe(_lookup(previous, name))} → {describe(_lookup(resolved, name))}"
    text = f"{key}: {_show(_lookup(previous, key))} → {_show(_lookup(resolved, key))}"
    reason = REASONS.get(key.removeprefix("base."))  # experiments keep the pipeline's settings under `base`
    return f"{text} ({reason})" if reason else text


def _lookup(tree, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key, _UNSET) if isinstance(tree, dict) else _UNSET
    return tree


def _show(value) -> str:
    text = "(unset)" if value is _UNSET else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _diff_keys(a, b, prefix="") -> set[str]:
    """Dotted paths of the leaves that differ (a section missing on one side counts as empty)."""
    if isinstance(a, dict) or isinstance(b, dict):
        a = a if isinstance(a, dict) else {}
        b = b if isinstance(b, dict) else {}
        keys = set()
        for key in set(a) | set(b):
            keys |= _diff_keys(a.get(key, _UNSET), b.get(key, _UNSET), f"{prefix}.{key}" if prefix else key)
        return keys
    return {prefix or "(root)"} if a != b else set()
