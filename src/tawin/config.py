"""Typed configuration: frozen dataclasses per stage, YAML files, command-line overrides.

Precedence: dataclass defaults < YAML file < ``--set section.field=value`` overrides. Every
problem (unknown key, with a did-you-mean suggestion; wrong type; impossible value) is collected
and reported at once in one :class:`ConfigError` before any work starts.

``--set`` overrides and the old spellings of renamed settings: :mod:`tawin.overrides`. A class
may declare ``SECTIONS`` (heading → its field names, in field order): ``tawin config show``
prints the headings above the fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from tawin.errors import ConfigError
from tawin.overrides import (  # noqa: F401  (importers of tawin.config use them)
    apply_overrides,
    field_types,
    in_new_spelling,
    merge_override,
    parse_override,
    rename_old_spellings,
)


def _coerce(value: Any, annotation: Any, path: str, problems: list[str]) -> Any:
    """Convert `value` to `annotation`, appending a message to `problems` when it cannot."""
    origin = get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            problems.append(
                f"{path} is a section of {annotation.__name__} fields, not a single "
                f"value ({value!r}); write it as a mapping, e.g. {path}: {{field: value}}"
            )
            return None
        return build_config(annotation, value, path, problems)
    if isinstance(value, dict):
        problems.append(f"{path} is a single value ({_describe(annotation)}), not a section; got the mapping {value!r}")
        return None
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
        problems.append(f"{path}={value!r} must be {_describe(annotation)}")
        return None
    if origin is Literal:
        choices = get_args(annotation)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{path}={value!r} is not one of {list(choices)}{hint}")
        return value
    if origin is tuple:
        item_types = get_args(annotation)
        if isinstance(value, str) and "," in value:
            # `--set eval.ks=5,10` arrives as the string "5,10": read it as a list.
            value = [_scalar(part) for part in value.split(",")]
        if isinstance(value, (int, float, str)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}={value!r} must be a list, e.g. [1, 5, 10] in YAML or {path}=1,5,10 in --set")
            return None
        item_type = item_types[0] if item_types else Any
        return tuple(_coerce(v, item_type, f"{path}[{i}]", problems) for i, v in enumerate(value))
    return _coerce_scalar(value, annotation, path, problems)


def _coerce_scalar(value: Any, annotation: Any, path: str, problems: list[str]) -> Any:
    """`value` as a bool, int, float or str (YAML and --set strings such as "true" or "3" included)."""
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        problems.append(f"{path}={value!r} must be true or false")
        return None
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}={value!r} must be an integer")
            return None
        return value
    if annotation is float:
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            problems.append(f"{path}={value!r} must be a number")
            return None
        if math.isnan(number):
            problems.append(f"{path}={value!r} must be a number, not NaN")
            return None
        return number
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append(f"{path}={value!r} must be a string")
            return None
        return str(value)
    return value  # Any, or a type this loader does not convert


def _scalar(text: str) -> Any:
    """One comma-separated list entry, read as YAML (so numbers become numbers) where it parses."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text.strip()


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}


def _describe(annotation: Any) -> str:
    """Plain words for a type: `int | None` → 'an integer or null'."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in get_args(annotation))
    if origin is Literal:
        return "one of " + str(list(get_args(annotation)))
    if origin is tuple:
        return "a list"
    if annotation in _NAMES:
        return _NAMES[annotation]
    return str(annotation).replace("typing.", "")


def build_config(cls, data: dict, prefix: str, problems: list[str], lenient: bool = False):
    """`cls` from a mapping, each value coerced to its field's type; None when anything is wrong.

    Unknown keys (with a did-you-mean suggestion) and values of the wrong type are appended to
    `problems`, each named by its dotted path under `prefix`; the ``check()`` rules are not run.
    With `lenient`, a bad value leaves its field at the default instead, so that the ``check()``
    rules can still run on the rest (see :func:`load_config`).
    """
    types_by_name = field_types(cls)
    kwargs = {}
    first = len(problems)
    data = rename_old_spellings(cls, data, f"{prefix}." if prefix else "", problems)
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in types_by_name:
            close = difflib.get_close_matches(key, list(types_by_name), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(types_by_name))}"
            problems.append(f"{path}: unknown key ({hint})")
            continue
        before = len(problems)
        annotation = types_by_name[key]
        if lenient and dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            kwargs[key] = build_config(annotation, value, path, problems, lenient=True)
        else:
            kwargs[key] = _coerce(value, annotation, path, problems)
        if len(problems) > before and lenient and kwargs[key] is None:
            del kwargs[key]
    if len(problems) > first and not lenient:
        return None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError):
        if not lenient:
            raise
        return None


def read_yaml(path: str | Path) -> Any:
    """The data of the YAML file `path`, for every YAML file a command reads.

    A ConfigError naming the file when it is no UTF-8 text, no valid YAML, or writes a key twice in
    one mapping: plain ``yaml.safe_load`` keeps the last and silently drops the first (a second
    ``sft:`` block would discard every setting of the first).
    """
    path = Path(path)
    try:
        loader = yaml.SafeLoader(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; pass a UTF-8 YAML file.") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror}); pass a readable YAML file.") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        repeated = _repeated_keys(node, "", set())
        if repeated:
            raise ConfigError(
                f"{path}: {_join(repeated)} YAML keeps only the last occurrence and silently drops the "
                "others; merge each repeated key into one entry (or delete the ones you do not mean)."
            )
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        shown = " ".join(str(error).split())
        raise ConfigError(f"{path}: not valid YAML ({shown}). Fix the syntax at the line shown.") from None
    finally:
        loader.dispose()


def _repeated_keys(node: yaml.Node, where: str, visited: set[int]) -> list[str]:
    """ "`sft.epochs` is written twice (lines 3 and 7)" for each key repeated in a mapping of the tree."""
    if id(node) in visited:  # an alias may point back into its own anchor
        return []
    visited.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        return [
            found
            for index, item in enumerate(node.value)
            for found in _repeated_keys(item, f"{where}[{index}]", visited)
        ]
    if not isinstance(node, yaml.MappingNode):
        return []
    lines: dict[tuple[str, str], list[int]] = {}
    inner: list[str] = []
    for key, value in node.value:
        # Keys merged in with `<<` may be overridden on purpose: only keys written here count.
        written = isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge"
        if written:
            lines.setdefault((key.tag, key.value), []).append(key.start_mark.line + 1)
        inner += _repeated_keys(value, _dotted(where, key.value) if written else where, visited)
    problems = []
    for (_, name), found in lines.items():
        if len(found) > 1:
            times = "twice" if len(found) == 2 else f"{len(found)} times"
            shown = ", ".join(map(str, found[:-1])) + f" and {found[-1]}"
            problems.append(f"`{_dotted(where, name)}` is written {times} (lines {shown})")
    return problems + inner


def _dotted(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def load_config(
    cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: dict | None = None
):
    """Build `cls` from defaults, an optional YAML file and ``key=value`` overrides.

    Every problem (malformed override, unknown key, wrong type, impossible value) is reported in
    one :class:`ConfigError`; nothing is created on disk before this returns.
    """
    problems: list[str] = []
    # Each source in its new spelling before they merge, so that a --set in either spelling overrides the file.
    data: dict = in_new_spelling(cls, dict(base or {}), problems)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            what = "is a folder, not a YAML file" if path.exists() else "config file not found"
            raise ConfigError(f"{path}: {what}; pass an existing YAML file with --config (see configs/ for examples).")
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path}: the top level must be a mapping of config sections (e.g. "
                f"`sft:` then indented fields), not a {type(loaded).__name__}."
            )
        data = deep_merge(data, in_new_spelling(cls, loaded, problems))
    apply_overrides(cls, data, overrides, problems)
    where = f" in {path} and --set overrides" if path else ""
    config = build_config(cls, data, "", problems, lenient=True)
    if problems:
        # Type problems do not hide the rules: those are checked on the rest of the config (a bad
        # value stays at its default), leaving out any rule that names a field already reported.
        bad = {problem.split("=")[0].split(":")[0].split("[")[0] for problem in problems}
        named = re.compile("|".join(rf"(?<![\w.]){re.escape(name)}(?!\w)" for name in bad))
        rules = [rule for rule in (validate(config) if config is not None else []) if not named.search(rule)]
        raise ConfigError(
            f"invalid configuration{where}: {_join(problems + rules)} "
            "Fix these keys in the YAML file or the --set overrides."
        )
    problems = validate(config)
    if problems:
        raise ConfigError(f"invalid configuration{where}: {_join(problems)}")
    return config


def _join(problems: list[str]) -> str:
    """One sentence per run of problems: 'a; b; c.' (each problem's own final period dropped)."""
    return "; ".join(p.rstrip().rstrip(".") for p in problems) + "."


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


def deep_merge(base: dict, update: dict) -> dict:
    """`base` with `update` merged in, section by section (a value of `update` replaces one of `base`)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
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


def field_docs(cls) -> dict[str, str]:
    """Each field's docstring (the string literal right under it in the class body), on one line."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def render_config(config, section: str | None = None) -> str:
    """The config as YAML that loads back, each field preceded by its doc line as a comment.

    With `section` only that section (e.g. ``sft``); a name that is no section is a ConfigError."""
    sections = {f.name for f in dataclasses.fields(config) if dataclasses.is_dataclass(getattr(config, f.name))}
    if section is not None:
        if section not in sections:
            raise ConfigError(
                f"config show: {section!r} is not a config section; choose one "
                f"of {sorted(sections)} or leave it out for the whole config."
            )
        chosen = getattr(config, section)
        return "\n".join([f"{section}:  # {type(chosen).__name__}", *_render(chosen, "  ")]) + "\n"
    return "\n".join(_render(config, "")) + "\n"


def section_headings(cls) -> dict[str, str]:
    """The first field of each of ``cls.SECTIONS`` → its heading (empty for a class without sections)."""
    return {names[0]: heading for heading, names in getattr(cls, "SECTIONS", ()) if names}


def _render(config, indent: str) -> list[str]:
    docs = field_docs(type(config))
    headings = section_headings(type(config))
    lines: list[str] = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in headings:
            lines.append(f"{indent}# --- {headings[field.name]} ---")
        if field.name in docs:
            lines.append(f"{indent}# {docs[field.name]}")
        if dataclasses.is_dataclass(value):
            lines += [f"{indent}{field.name}:  # {type(value).__name__}", *_render(value, indent + "  ")]
        else:
            # Dumped inside a one-element flow list, so that scalars and lists alike come out on one line.
            shown = yaml.safe_dump([to_dict_value(value)], default_flow_style=True, width=10_000).strip()[1:-1]
            lines.append(f"{indent}{field.name}: {shown}")
    return lines


def to_dict_value(value):
    """A config value as plain YAML data (tuples become lists)."""
    return [to_dict_value(v) for v in value] if isinstance(value, (tuple, list)) else value
