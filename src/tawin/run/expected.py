"""Orchestration — does a run's table fall inside the ranges another machine measured? (`tawin run --expect`).

bf16 kernels differ between CPUs, so the same command and seed print other digits on another
machine. An expectation file states, per method and metric, the interval that the published numbers
say a user should land in, and how it was made; `tawin run --expect FILE` prints, after its
results table, each number with its interval and whether it lies inside. `make demo` passes the
demo's file (`benchmarks/results/demo/expected.json`), so a user sees at once whether their run
reproduces the README's.

The file (JSON)::

    {"made_by": "how the intervals were measured (machine, precision, commit, date, rule)",
     "ranges": {"SFT": {"recall@3": [0.0841, 0.0951], ...}, "TAWin (σ*=2, τ=1, beam)": {...}}}

Methods and metrics the run did not produce are listed as missing, never counted as inside.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tawin.errors import UserError


@dataclass(frozen=True)
class Expectation:
    """Intervals per method label and metric key, with the sentence saying how they were made."""

    made_by: str
    ranges: dict[str, dict[str, tuple[float, float]]]
    source: str = ""
    """The file it was read from, named in the report."""


def read_expectation(path: str | Path) -> Expectation:
    """The file at `path`, checked: every interval is two finite numbers, low ≤ high."""
    path = Path(path)
    fix = f"see {Path(__file__).name}'s docstring for the format, or leave --expect out"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--expect {path}: no such file; {fix}") from None
    except (OSError, ValueError) as error:
        raise UserError(f"--expect {path}: not a readable JSON file ({error}); {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("ranges"), dict) or not data["ranges"]:
        raise UserError(f"--expect {path}: needs a non-empty object 'ranges' (method → metric → [low, high]); {fix}")
    ranges: dict[str, dict[str, tuple[float, float]]] = {}
    for method, metrics in data["ranges"].items():
        if not isinstance(metrics, dict):
            raise UserError(f"--expect {path}: ranges[{method!r}] must map metrics to [low, high]; {fix}")
        ranges[method] = {}
        for metric, bounds in metrics.items():
            if not (
                isinstance(bounds, list)
                and len(bounds) == 2
                and all(_is_number(b) for b in bounds)
                and bounds[0] <= bounds[1]
            ):
                raise UserError(
                    f"--expect {path}: ranges[{method!r}][{metric!r}]={bounds!r} must be [low, high] "
                    f"with finite numbers, low ≤ high; {fix}"
                )
            ranges[method][metric] = (float(bounds[0]), float(bounds[1]))
    return Expectation(str(data.get("made_by", "")), ranges, str(path))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def compare(results: dict[str, dict], expectation: Expectation) -> tuple[list[str], int, int]:
    """(lines, numbers inside, numbers checked): one line per method, each metric with its interval.

    `results` maps method labels to their metrics (the `tawin run` table: `recall@3` → value).
    """
    lines, inside, checked = [], 0, 0
    for method, metrics in expectation.ranges.items():
        if method not in results:
            lines.append(f"  {method}: not in this run's table (missing, not checked)")
            continue
        cells = []
        for metric, (low, high) in metrics.items():
            value = results[method].get(metric)
            if value is None:
                cells.append(f"{metric} missing")
                continue
            checked += 1
            ok = low <= value <= high
            inside += ok
            cells.append(f"{metric} {value:.4f} {'in' if ok else 'OUTSIDE'} [{low:.4f}, {high:.4f}]")
        lines.append(f"  {method}: " + "; ".join(cells))
    return lines, inside, checked


def expectation_report(results: dict[str, dict], expectation: Expectation) -> str:
    """The text `tawin run --expect` prints after its table."""
    lines, inside, checked = compare(results, expectation)
    verdict = (
        f"All {checked} numbers lie inside the expected ranges."
        if checked and inside == checked
        else f"{checked - inside} of {checked} numbers lie outside the expected ranges: this run does not reproduce "
        "the published one within its stated spread (another recipe, dataset or seed, or a real difference)."
    )
    head = f"Expected ranges ({expectation.source}): {expectation.made_by}".rstrip(": ")
    return "\n".join([head, *lines, verdict])
