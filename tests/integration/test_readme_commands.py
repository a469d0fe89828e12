"""Every command in the README runs as written, so a renamed option or setting fails here first.

The README's ```bash blocks are split into commands, one per line. Each command is either

* named in ``LONG_JOBS`` (it trains for minutes, needs a GPU, or reaches the network): not run, but
  the entry must still be in the README, so the list cannot go stale;
* in ``RUN_AS_WRITTEN`` (cheap): run as written, in-process, and must exit 0;
* any other ``tawin`` command, alone or under ``accelerate launch … -m tawin`` or
  ``torchrun … -m tawin``: parsed by tawin's own parser, run with ``--help`` appended, and its
  config options (``--config``, ``--set``, ``--dataset``, ``--model``, ``--seed``) resolved by
  ``tawin config show``, which builds and validates the whole config without training.

A command of any other program fails the test until it is given one of these treatments. Every
repository file a command names (``configs/…``, ``examples/…``, ``benchmarks/…``) must exist, and
every ``from … import …`` of a ```python block must resolve. About a second in all.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest

from tawin.cli import build_parser, main

from conftest import REPO

README = (REPO / "README.md").read_text()
LONG_JOBS = {
    "make demo": "trains for minutes (the demo itself)",
    "make test": "the test suite itself",
    'pip install -e ".[trl]"': "reaches PyPI",
    "python examples/trl_tawin.py": "trains for minutes (tests/integration/test_trl_parity.py checks the step)",
    "tensorboard --logdir runs/demo/tracking/tensorboard": "a server that runs until stopped",
    "bash benchmarks/gpu_paper.sh": "needs a GPU (tests/integration/test_gpu_paper_dry_run.py runs its CPU dry run)",
}
RUN_AS_WRITTEN = {"tawin --help", "tawin config show rl", "tawin data show"}
LAUNCHERS = {"accelerate": ["launch"], "torchrun": []}
CONFIG_OPTIONS = {"--config", "--set", "--dataset", "--model", "--seed"}
REPO_PATH = re.compile(r"^(configs|examples|benchmarks|docs)/\S+$")


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def commands() -> list[str]:
    lines = [line.split(" #", 1)[0].strip() for block in blocks("bash") for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def tawin_argv(command: str) -> list[str] | None:
    """The arguments after `tawin` (directly, or under a launcher with `-m tawin`), or None."""
    words = shlex.split(command)
    if words[0] == "tawin":
        return words[1:]
    if words[0] in LAUNCHERS and "-m" in words:
        at = words.index("-m")
        assert words[1 : 1 + len(LAUNCHERS[words[0]])] == LAUNCHERS[words[0]], (
            f"{command}: unexpected launcher arguments"
        )
        assert (Path(sys.executable).parent / words[0]).exists(), (
            f"{command}: {words[0]} is not installed beside python"
        )
        assert words[at + 1] == "tawin", f"{command}: the launcher must run `-m tawin`"
        return words[at + 2 :]
    return None


def config_options(argv: list[str]) -> list[str]:
    """The options of `argv` that shape the config, as `tawin config show` takes them."""
    kept, words = [], iter(argv)
    for word in words:
        if word in CONFIG_OPTIONS:
            kept += [word, next(words)]
    return kept


def exit_code(argv: list[str]) -> int:
    """`tawin ARGV` in-process: its return value, or the code of the SystemExit that --help raises."""
    try:
        return main(argv)
    except SystemExit as error:
        return error.code


def test_the_readme_has_commands_and_every_long_job_is_in_it():
    found = commands()
    assert len(found) >= 10, f"the README's bash blocks hold only {found}"
    missing = sorted(set(LONG_JOBS) - set(found)) + sorted(RUN_AS_WRITTEN - set(found))
    assert not missing, f"named in this test but no longer in the README (update the lists): {missing}"


@pytest.mark.parametrize("command", commands(), ids=str)
def test_readme_command_runs_as_written(command, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    for word in shlex.split(command):
        if REPO_PATH.match(word):
            assert (REPO / word).exists(), f"README command `{command}` names {word}, which does not exist"
    if command in LONG_JOBS:
        pytest.skip(LONG_JOBS[command])
    argv = tawin_argv(command)
    assert argv is not None, (
        f"README command `{command}` is neither tawin nor a named long job; add it to LONG_JOBS or RUN_AS_WRITTEN"
    )
    if command in RUN_AS_WRITTEN:
        assert exit_code(argv) == 0, capsys.readouterr().err
        return
    try:
        build_parser().parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"`{command}` does not parse: exit {error.code}: {capsys.readouterr().err}")
    assert exit_code(argv + ["--help"]) == 0 and "usage: tawin" in capsys.readouterr().out
    if config_options(argv):
        assert main(["config", "show", *config_options(argv)]) == 0, f"`{command}`: {capsys.readouterr().err}"


@pytest.mark.parametrize("source", blocks("python"))
def test_readme_python_imports_resolve(source):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), (
                    f"README: `from {node.module} import {alias.name}` no longer resolves"
                )
