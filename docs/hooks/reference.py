"""MkDocs hook: the reference pages are generated from the code at build time, so they cannot drift.

* ``reference/cli.md``: its marker becomes every ``tawin`` subcommand's usage and options, read from
  the argparse parsers the CLI itself builds (:func:`tawin.cli.build_parser`);
* ``reference/config.md``: its marker becomes every config field with its type, default and
  docstring, read from the config dataclasses (what ``tawin config show`` prints as comments);
* ``reference/api.md``: every ``::: module.name`` entry must import, and every name a public package
  exports (its ``__all__``) must have an entry. mkdocstrings reads the source without importing it,
  so without this check a module that fails to import would still render.

A missing marker, an entry that fails to import or an undocumented export stops the build. Nothing
heavy loads when MkDocs imports this file: tawin's modules are imported by the page they serve.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin

CLI_MARKER = "<!-- tawin:cli-reference -->"
CONFIG_MARKER = "<!-- tawin:config-reference -->"
API_PAGE = "reference/api.md"

USAGE_WIDTH = 100
"""Characters per line of the usage blocks (argparse wraps at the terminal's width otherwise)."""

PUBLIC_PACKAGES = ("tawin", "tawin.rl", "tawin.metrics", "tawin.baselines", "tawin.integrations.trl")
"""Packages whose ``__all__`` is the public Python API: each name needs an entry on the API page."""


class ConfigPage(typing.NamedTuple):
    """One config file kind of the config reference: which commands read it and its root dataclass."""

    title: str
    commands: str
    module: str
    name: str


CONFIG_PAGES = (
    ConfigPage(
        "Run config",
        "`tawin run`, `sft`, `rl`, `eval`, `recommend` and `config show` read it with "
        "`--config FILE` and `--set SECTION.FIELD=VALUE`",
        "tawin.run.config",
        "PipelineConfig",
    ),
    ConfigPage(
        "Experiment config",
        "`tawin experiment CONFIG` reads it; `--set KEY=VALUE` overrides an experiment "
        "key, any other key goes to `base`. How `methods` and `evals` are written is shown on "
        "[Experiments](../experiments.md)",
        "tawin.experiments.grid",
        "Experiment",
    ),
    ConfigPage(
        "Sequential baselines",
        "`tawin baseline sasrec|gru4rec --config FILE --set FIELD=VALUE`, and an experiment's `baseline` section",
        "tawin.baselines.sequential",
        "SequentialBaselineConfig",
    ),
    ConfigPage(
        "Semantic IDs", "`tawin items build-sids --config FILE --set FIELD=VALUE`", "tawin.items.sids", "SIDConfig"
    ),
    ConfigPage(
        "Data preparation",
        "`tawin data prepare --config FILE --set FIELD=VALUE`",
        "tawin.data.protocol.prepare_config",
        "PrepareConfig",
    ),
)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs event: fill the generated pages' markers; check the API page's entries."""
    generators = {
        "reference/cli.md": (CLI_MARKER, cli_reference),
        "reference/config.md": (CONFIG_MARKER, config_reference),
    }
    where = page.file.src_uri
    if where in generators:
        marker, generate = generators[where]
        if marker not in markdown:
            _fail(f"docs/{where} has no {marker} line, where the generated reference goes; put it back.")
        return markdown.replace(marker, generate())
    if where == API_PAGE:
        problems = api_problems(markdown)
        if problems:
            _fail(f"docs/{API_PAGE}: " + "; ".join(problems) + ".")
    return markdown


def _fail(message: str) -> typing.NoReturn:
    from mkdocs.exceptions import PluginError

    raise PluginError(message)


# --------------------------------------------------------------------------------------------- CLI


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Markdown for every command of `parser` (default: tawin's): a heading, its help, usage and options."""
    if parser is None:
        from tawin.cli import build_parser

        parser = build_parser()
    blocks = []
    for depth, name, summary, command in cli_commands(parser):
        blocks.append(_command_block(depth, name, summary, command))
    return "\n\n".join(blocks) + "\n"


def cli_commands(parser: argparse.ArgumentParser, depth: int = 0, summary: str = ""):
    """(depth, full name, one-line help, parser) for `parser` and each subcommand below it, depth first."""
    yield depth, parser.prog, summary, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield from cli_commands(child, depth + 1, helps.get(name, ""))


def _command_block(depth: int, name: str, summary: str, parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    heading = "#" * min(depth + 2, 6)
    lines = [f"{heading} {name} {{#{_slug(name)}}}", ""]
    text = parser.description or summary
    if text:
        lines += [_markdown_text(text), ""]
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    lines += ["```text", formatter.format_help().strip(), "```"]
    rows = [action for action in parser._actions if not isinstance(action, argparse._HelpAction)]
    subcommands = [a for a in rows if isinstance(a, argparse._SubParsersAction)]
    options = [a for a in rows if not isinstance(a, argparse._SubParsersAction)]
    for action in subcommands:
        lines += ["", "| Command | What it does |", "| --- | --- |"]
        for choice in action._choices_actions:
            full = f"{name} {choice.dest}"
            lines.append(f"| [`{full}`](#{_slug(full)}) | {_cell(choice.help or '')} |")
    if options:
        lines += ["", "| Argument | Meaning |", "| --- | --- |"]
        for action in options:
            invocation = formatter._format_action_invocation(action)
            lines.append(f"| `{invocation}` | {_cell(formatter._expand_help(action)) if action.help else ''} |")
    return "\n".join(lines)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ------------------------------------------------------------------------------------------ config


def config_reference(pages: tuple[ConfigPage, ...] = CONFIG_PAGES) -> str:
    """Markdown for every field of every config page: dotted name, type, default and docstring."""
    roots = [getattr(importlib.import_module(page.module), page.name) for page in pages]
    anchors = {}
    for page, root in zip(pages, roots):
        anchors[root] = _slug(page.title)
        for path, section in _sections(root, ""):
            anchors.setdefault(section, _slug(f"{page.title} {path}") if path else _slug(page.title))
    blocks = []
    for page, root in zip(pages, roots):
        blocks.append(f"## {page.title} {{#{_slug(page.title)}}}\n\n{page.commands}.")
        blocks += _config_tables(root, "", page.title, anchors, 2)
    return "\n\n".join(blocks) + "\n"


def _sections(cls, prefix: str):
    """(dotted path, dataclass) of `cls`'s nested config sections, depth first."""
    for field in dataclasses.fields(cls):
        annotation = _field_types(cls)[field.name]
        if dataclasses.is_dataclass(annotation):
            path = f"{prefix}{field.name}"
            yield path, annotation
            yield from _sections(annotation, f"{path}.")


def _config_tables(cls, prefix: str, title: str, anchors: dict, level: int) -> list[str]:
    """Blocks for `cls` (whose own heading is at `level`): its fields as tables, grouped under the
    headings its SECTIONS declares if it does, each nested section where its field stands."""
    field_types, docs, defaults = _field_types(cls), _field_docs(cls), cls()
    blocks = []
    for heading, names in _field_groups(cls):
        group, rows = [], []
        inner = level + 2 if heading else level + 1
        for name in names:
            annotation, path = field_types[name], f"{prefix}{name}"
            if dataclasses.is_dataclass(annotation) and anchors.get(annotation) == _slug(f"{title} {path}"):
                if rows:
                    group.append(_table(rows))
                    rows = []
                group += _section_blocks(annotation, path, docs.get(name, ""), title, anchors, inner)
            elif dataclasses.is_dataclass(annotation):  # a section documented elsewhere on the page
                rows.append(
                    f"| `{path}` | section | | {_cell(docs.get(name, ''))} "
                    f"See [{annotation.__name__}](#{anchors[annotation]}). |"
                )
            else:
                rows.append(
                    f"| `{path}` | `{_type_text(annotation)}` | `{_default_text(getattr(defaults, name))}` | "
                    f"{_cell(docs.get(name, ''))} |"
                )
        if rows:
            group.append(_table(rows))
        if group and heading:
            group.insert(0, f"{'#' * min(level + 1, 6)} {heading}")
        blocks += group
    return blocks


def _section_blocks(cls, path: str, doc: str, title: str, anchors: dict, level: int) -> list[str]:
    """A nested section: its heading (the dotted path), its class and docstring, then its fields."""
    text = f"{'#' * min(level, 6)} `{path}` {{#{_slug(f'{title} {path}')}}}\n\n{cls.__name__}"
    if doc:
        text += f": {_markdown_text(doc)}"
    return [text, *_config_tables(cls, f"{path}.", title, anchors, level)]


def _table(rows: list[str]) -> str:
    return "\n".join(["| Field | Type | Default | Meaning |", "| --- | --- | --- | --- |", *rows])


def _field_groups(cls) -> list[tuple[str, list[str]]]:
    """(heading, field names) in page order: the groups ``cls.SECTIONS`` declares, if any, then the
    fields none of them names; otherwise one group of every field under no heading."""
    names = [field.name for field in dataclasses.fields(cls)]
    declared = getattr(cls, "SECTIONS", None)
    if not declared:
        return [("", names)]
    groups = [(heading, [name for name in fields if name in names]) for heading, fields in declared]
    named = {name for _, fields in groups for name in fields}
    rest = [name for name in names if name not in named]
    return groups + ([("Other fields", rest)] if rest else [])


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls)}


def _field_docs(cls) -> dict[str, str]:
    from tawin.config import field_docs

    return field_docs(cls)


def _type_text(annotation: Any) -> str:
    """A field type as a YAML user reads it: `int | null`, `"beam" | "random"`, `list[int]`."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(option) for option in get_args(annotation))
    if origin is Literal:
        return " | ".join(f'"{value}"' if isinstance(value, str) else str(value) for value in get_args(annotation))
    if origin is tuple:
        items = [item for item in get_args(annotation) if item is not Ellipsis]
        if len(set(items)) == 1 or not items:
            return f"list[{_type_text(items[0]) if items else 'any'}]"
        return f"list[{', '.join(_type_text(item) for item in items)}]"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _default_text(value: Any) -> str:
    """A default as it is written in YAML (`null`, `[1, 5, 10]`, `{}`)."""
    import yaml

    from tawin.config import to_dict_value

    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return yaml.safe_dump([to_dict_value(value)], default_flow_style=True, width=10_000, allow_unicode=True).strip()[
        1:-1
    ]


# ------------------------------------------------------------------------------------------- text


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj):`~?([^`]+)`")
_MARKUP = re.compile(r"([\\*_\[\]<>|])")


def _markdown_text(text: str) -> str:
    """Plain docstring or help text as Markdown: code spans kept, Sphinx roles made code spans,
    and every other character Markdown would read as markup escaped."""
    text = _ROLE.sub(lambda match: f"`{match.group(1)}`", " ".join(text.split()))
    parts, end = [], 0
    for match in _CODE_SPAN.finditer(text):
        parts += [_MARKUP.sub(r"\\\1", text[end : match.start()]), match.group(0)]
        end = match.end()
    return "".join(parts + [_MARKUP.sub(r"\\\1", text[end:])])


def _cell(text: str) -> str:
    """Text for one table cell: a pipe inside a code span would still end the cell."""
    return _markdown_text(text).replace("`|`", "`\\|`")


# -------------------------------------------------------------------------------------------- API


_ENTRY = re.compile(r"^:::\s+([\w.]+)", re.MULTILINE)


def api_entries(markdown: str) -> list[str]:
    """The identifiers of the page's ``::: identifier`` entries, in page order."""
    return _ENTRY.findall(markdown)


def api_problems(markdown: str, packages: tuple[str, ...] = PUBLIC_PACKAGES) -> list[str]:
    """Entries that do not import, and public exports without an entry; empty when all is well."""
    problems, documented = [], []
    for identifier in api_entries(markdown):
        try:
            documented.append(_import_object(identifier))
        except Exception as error:  # any failure to import is the build's failure, with its cause
            problems.append(f"`::: {identifier}` does not import ({type(error).__name__}: {error})")
    for package in packages:
        for name in getattr(importlib.import_module(package), "__all__", ()):
            if name.startswith("__"):
                continue
            try:
                value = _import_object(f"{package}.{name}")
            except Exception as error:
                problems.append(f"{package}.{name} is exported but does not import ({type(error).__name__}: {error})")
                continue
            if not any(value is entry for entry in documented):
                problems.append(f"{package}.{name} is exported but has no `:::` entry; add one")
    return problems


def _import_object(identifier: str) -> object:
    """The object that `identifier` (module path, then attribute path) names, imported for real."""
    parts = identifier.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError as error:
            if error.name is None or not ".".join(parts[:split]).startswith(error.name):
                raise  # the module exists but one of its own imports is missing
            continue
        for attribute in parts[split:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(f"no module named {parts[0]!r}")
