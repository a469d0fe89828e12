"""The CLI starts fast and shares the CPU fairly (issue #22, items 10 and 11).

`tawin --help`, `--version` and `config show` load neither torch nor transformers (they took 4–5 s
when building the parser imported them). Every command that does load torch finds the CLI's
OpenMP settings (:data:`tawin.runtime.OPENMP_SETTINGS`) already in the environment: libgomp reads
them once, when torch loads it, so a setting made after that is ignored (the CLI used to set
`OMP_WAIT_POLICY` after torch had loaded, and a busy CPU made evaluation 8× slower).
Each check runs in a fresh interpreter, since this test process has loaded torch long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PROBE = r"""
import json, os, sys
seen = {}
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "transformers") and name not in seen:
            seen[name] = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        return None
sys.meta_path.insert(0, Watch())
from tawin.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print("PROBE" + json.dumps({"code": code, "seen": seen}))
"""


def probe(*argv: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("PROBE"))
    return json.loads(line[len("PROBE") :])


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["config", "show"], ["config", "show", "rl"], ["sft", "--help"]]
)
def test_help_version_and_config_show_load_neither_torch_nor_transformers(argv):
    result = probe(*argv)
    assert result["code"] in (0, None)
    assert result["seen"] == {}, f"tawin {' '.join(argv)} imported {sorted(result['seen'])}"


def test_the_openmp_settings_are_in_place_when_torch_loads(tmp_path):
    from tawin.runtime import OPENMP_SETTINGS

    result = probe(
        "eval",
        "--checkpoint",
        "popularity",
        "--out",
        str(tmp_path / "eval"),
        "--set",
        "eval.sample_size=8",
        "--no-progress",
    )
    assert result["code"] == 0
    assert "torch" in result["seen"], "the command was meant to load torch"
    for name, value in OPENMP_SETTINGS.items():
        assert result["seen"]["torch"][name] == value


def test_the_users_own_openmp_setting_wins(tmp_path):
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            "eval",
            "--checkpoint",
            "popularity",
            "--out",
            str(tmp_path / "eval"),
            "--set",
            "eval.sample_size=8",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("PROBE"))[len("PROBE") :])
    assert result["seen"]["torch"]["OMP_WAIT_POLICY"] == "ACTIVE"
