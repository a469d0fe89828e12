"""The documentation's generated reference pages (docs/hooks/reference.py) cover the code they document.

The hook's generators are called directly: MkDocs itself runs in `make docs`, not here.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import typing
from pathlib import Path

import pytest

from tawin.cli import build_parser
from tawin.run.config import PipelineConfig

HOOK = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "reference.py"


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("tawin_docs_reference_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def every_command(parser: argparse.ArgumentParser, name: str = "tawin"):
    """(full name, parser) of `parser` and every subcommand under it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from every_command(child, f"{name} {child_name}")


def test_cli_reference_has_a_section_and_every_option_of_every_subcommand(hook):
    text = hook.cli_reference()
    headings = {line.lstrip("#").split(" {#")[0].strip() for line in text.splitlines() if line.startswith("#")}
    commands = list(every_command(build_parser()))
    assert len(commands) > 10
    for name, parser in commands:
        assert name in headings, f"{name} has no section in the CLI reference"
        section = text.split(f" {name} {{#")[1].split("\n#")[0]
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in section or f", {option}" in section, f"{name} {option} is missing"


def test_cli_reference_is_read_from_the_parser(hook):
    """A subcommand added to the parser appears without anyone editing the page."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    added = commands.add_parser("newcommand", help="a command the page never heard of")
    added.add_argument("--brand-new-flag", help="what it does")
    text = hook.cli_reference(parser)
    assert "### tawin newcommand {#tawin-newcommand}" in text
    assert "| `--brand-new-flag BRAND_NEW_FLAG` | what it does (default: none) |" in text
    assert "[`tawin newcommand`](#tawin-newcommand)" in text


def config_paths(cls, prefix: str = ""):
    """Dotted path of every plain field of `cls` and of its nested sections."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            yield from config_paths(hints[field.name], f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}"


def test_config_reference_lists_every_field_of_the_run_config_with_its_default(hook):
    text = hook.config_reference()
    paths = list(config_paths(PipelineConfig))
    assert len(paths) > 50
    for path in paths:
        assert f"| `{path}` |" in text, f"{path} is missing from the config reference"
    assert "| `seed` | `int` | `0` |" in text
    assert "| `eval.ks` | `list[int]` |" in text


def test_config_reference_escapes_markup_outside_code(hook):
    assert (
        hook._markdown_text("σ* = K − 1, `a*b` and <run> [0, 1) x|y") == r"σ\* = K − 1, `a*b` and \<run\> \[0, 1) x\|y"
    )
    assert hook._markdown_text("see :mod:`tawin.rl`") == "see `tawin.rl`"


def test_api_check_names_entries_that_do_not_import_and_exports_without_an_entry(hook):
    page = "::: tawin.metrics.ranking.hit_matrix\n\n::: tawin.metrics.no_such_module.thing\n"
    problems = hook.api_problems(page, packages=("tawin.metrics",))
    assert any("tawin.metrics.no_such_module.thing` does not import" in p for p in problems)
    assert any(p.startswith("tawin.metrics.topk_metrics is exported but has no") for p in problems)
    assert not any(p.startswith("tawin.metrics.hit_matrix ") for p in problems)
