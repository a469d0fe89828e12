"""Package layout: stage imports only point down, no cycles, files and functions stay small.

The stages, lowest first: foundation (errors, config loading, checkpoint files, runtime and
distributed set-up) → data → items → models → decoding/metrics → eval/baselines/tracking → training
(sft, rl, their shared train_utils) → run/experiments/integrations → cli. A module may import its own stage
or a lower one, never a later one; sft and rl never import each other. Every import counts,
including those inside functions, since a lazy import still ties the two layers together.

The checks read the source with ``ast`` and import nothing, so they run in well under a second.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "src" / "tawin"

STAGES: dict[str, int] = {
    # Foundation: imported from every stage, so they may import nothing above it.
    "__init__": 0,
    "errors": 0,
    "config": 0,
    "overrides": 0,
    "checkpoint": 0,
    "runtime": 0,
    "distributed": 0,
    "lazy": 0,
    "data": 1,
    "items": 2,
    "models": 3,
    "decoding": 4,
    "metrics": 4,
    "eval": 5,
    "baselines": 5,
    "tracking": 5,  # experiment trackers: below training, whose log.jsonl records it forwards
    "train_utils": 6,
    "sft": 6,
    "rl": 6,
    "run": 7,
    "experiments": 7,
    "integrations": 7,  # tawin inside other trainers (TRL): uses rl, models and decoding; nothing imports it
    "cli": 8,
    "__main__": 8,
}
"""Stage of each top-level module or package of ``tawin``, keyed by its name under ``tawin.``."""

DATA_LAYERS: dict[str, int] = {"dataset": 0, "sid_collisions": 0, "formats": 1, "protocol": 2}
"""Order inside ``tawin.data``, keyed by the name under ``tawin.data.``: the canonical dataset and
its catalogue rule; the layouts datasets come in (``formats``); the protocol that turns
interactions into splits, which reads and writes through ``formats``."""

SIBLINGS_THAT_NEVER_MEET = ("sft", "rl")
"""Two training stages that must not import each other (shared pieces go to ``train_utils``)."""

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# Known exceptions, being fixed in files owned by other work in progress (#14). Each entry must
# still be needed: an entry that no longer matches a violation fails the test, so the list only
# shrinks. Empty it as the fixes land.
ALLOWED_UPWARD_IMPORTS: set[tuple[str, str]] = set()
"""(importing module, imported module) pairs exempt from the stage order."""
ALLOWED_LONG_FUNCTIONS: set[tuple[str, str]] = set()
"""(module, function) pairs exempt from MAX_FUNCTION_LINES."""
ALLOWED_LONG_FILES: set[str] = set()
"""Modules exempt from MAX_FILE_LINES."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES: dict[str, ast.Module] = {
    name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()
}


def stage_key(module: str) -> str:
    """``tawin.eval.evaluate`` → ``eval``; the package itself → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(module: str) -> list[tuple[str, int]]:
    """The ``tawin`` modules that `module` imports anywhere in its file, with the line numbers.

    ``from tawin.x import y`` names module ``tawin.x.y`` when that is a module, else ``tawin.x``.
    """
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "tawin"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "tawin":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append((submodule if submodule in MODULES else source, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        module: {target for target, _ in imported_modules(module) if target in MODULES and target != module}
        for module in MODULES
    }


def test_every_module_has_a_stage():
    unknown = sorted({stage_key(m) for m in MODULES} - set(STAGES))
    assert not unknown, (
        f"tawin.{unknown} have no stage: add each to STAGES in {Path(__file__).name} at the stage it belongs to"
    )


def test_imports_only_point_down_the_stage_order():
    violations, used = [], set()
    for module in MODULES:
        for target, line in imported_modules(module):
            low, high = STAGES.get(stage_key(module)), STAGES.get(stage_key(target))
            if low is None or high is None or high <= low:
                continue
            if (module, target) in ALLOWED_UPWARD_IMPORTS:
                used.add((module, target))
                continue
            violations.append(
                f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: "
                f"{module} (stage {low}) imports {target} (stage {high})"
            )
    assert not violations, "imports of a later stage; move the shared piece down to the lower stage:\n" + "\n".join(
        violations
    )
    assert used == ALLOWED_UPWARD_IMPORTS, (
        f"allow-list entries no longer needed, remove them: {sorted(ALLOWED_UPWARD_IMPORTS - used)}"
    )


def data_layer(module: str) -> int | None:
    """``tawin.data.formats.raw`` → DATA_LAYERS["formats"]; the package ``tawin.data`` itself → None."""
    parts = module.split(".")
    return DATA_LAYERS.get(parts[2]) if len(parts) > 2 else None


def test_data_subpackages_import_only_down():
    """formats never imports protocol, and neither sub-package is imported by dataset or sid_collisions."""
    data_modules = [m for m in MODULES if stage_key(m) == "data" and m != "tawin.data"]
    unknown = sorted({m.split(".")[2] for m in data_modules} - set(DATA_LAYERS))
    assert not unknown, f"tawin.data.{unknown} have no layer: add each to DATA_LAYERS in {Path(__file__).name}"
    violations = [
        f"{module} (layer {data_layer(module)}) imports {target} (layer {data_layer(target)}), line {line}"
        for module in data_modules
        for target, line in imported_modules(module)
        if data_layer(target) is not None and data_layer(target) > data_layer(module)
    ]
    assert not violations, "imports up the order inside tawin.data; move the shared piece down:\n" + "\n".join(
        violations
    )


def test_sft_and_rl_never_import_each_other():
    crossings = [
        f"{module} imports {target} (line {line})"
        for module in MODULES
        for target, line in imported_modules(module)
        if {stage_key(module), stage_key(target)} == set(SIBLINGS_THAT_NEVER_MEET)
    ]
    assert not crossings, (
        "sft and rl must not import each other; move the shared piece to tawin.train_utils:\n" + "\n".join(crossings)
    )


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, str] = {}  # "open" while on the depth-first path, "done" after
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, (
                "import cycle: " + " → ".join(cycle) + "; move what both need into a module of its own"
            )


def test_files_stay_under_the_line_limit():
    long = {module: len(MODULES[module].read_text(encoding="utf-8").splitlines()) for module in MODULES}
    over = {
        module: lines for module, lines in long.items() if lines > MAX_FILE_LINES and module not in ALLOWED_LONG_FILES
    }
    assert not over, f"files over {MAX_FILE_LINES} lines; split them by what they do: {over}"
    stale = sorted(m for m in ALLOWED_LONG_FILES if long.get(m, 0) <= MAX_FILE_LINES)
    assert not stale, f"allow-list entries no longer needed, remove them: {stale}"


def test_functions_stay_under_the_line_limit():
    lengths = {
        (module, node.name): node.end_lineno - node.lineno + 1
        for module, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    over = {
        f"{module}.{name}": lines
        for (module, name), lines in lengths.items()
        if lines > MAX_FUNCTION_LINES and (module, name) not in ALLOWED_LONG_FUNCTIONS
    }
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines; split them: {over}"
    stale = sorted(entry for entry in ALLOWED_LONG_FUNCTIONS if lengths.get(entry, 0) <= MAX_FUNCTION_LINES)
    assert not stale, f"allow-list entries no longer needed, remove them: {stale}"


def test_stage_numbers_in_module_docstrings_follow_the_stage_order():
    """A module docstring that opens with "Stage N —" names the stage STAGES gives its package."""
    wrong = []
    for module, tree in TREES.items():
        found = re.match(r"Stage (\d+) —", ast.get_docstring(tree) or "")
        if found and int(found.group(1)) != STAGES[stage_key(module)]:
            wrong.append(f"{module} says stage {found.group(1)}, STAGES says {STAGES[stage_key(module)]}")
    assert not wrong, "module docstrings with the wrong stage number; renumber them:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from tawin.metrics import topk_metrics", "tawin.metrics"),
        ("from tawin.items import embed", "tawin.items.embed"),
        ("import tawin.data.formats.canonical", "tawin.data.formats.canonical"),
        ("from . import raw", "tawin.data.formats.raw"),
        ("from .raw import read_source", "tawin.data.formats.raw"),
        ("from ..dataset import Dataset", "tawin.data.dataset"),
        ("from ... import errors", "tawin.errors"),
    ],
)
def test_imports_resolve_to_modules(source, expected, monkeypatch):
    """The resolver the checks rely on: package, submodule and relative imports."""
    module = "tawin.data.formats.csv_import"
    monkeypatch.setitem(TREES, module, ast.parse(source))
    assert [target for target, _ in imported_modules(module)] == [expected]


def test_docs_module_table_lists_every_module():
    """docs/index.md "Where the code lives" has one row per module, and no row for a module that is gone."""
    page = (REPO / "docs" / "index.md").read_text()
    layout = page.split("\n## Where the code lives\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(tawin/[\w/]+\.py)` \|", layout, flags=re.MULTILINE))
    package = REPO / "src"
    modules = {
        str(p.relative_to(package))
        for p in (package / "tawin").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    assert listed == modules, (
        f"docs/index.md module table: missing {sorted(modules - listed)}, not in the tree {sorted(listed - modules)}"
    )


def test_readme_layout_names_every_package_folder():
    """The README gives each folder of the package one line (STYLE.md rule 13)."""
    readme = (REPO / "README.md").read_text()
    layout = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`src/(tawin/(?:[\w]+/)?)`", layout))
    folders = {f"tawin/{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} | {"tawin/"}
    assert folders <= listed, f"README Layout: no line for {sorted(folders - listed)}"
