"""Orchestration — `tawin run`: the configured stages in order, then the results table and costs.

dataset → SFT → evaluation of SFT → RL → evaluation of RL → popularity → SASRec → GRU4Rec (each
as far as ``stages`` asks) → ``results.md`` and ``results.json`` (every method's metrics, each
stage's wall-clock and peak RSS). Rerunning the same command on the same folder resumes: finished
stages are skipped (see :mod:`tawin.run.stages`), and keep the cost recorded when they ran
(results.json's ``stages``, marked ``earlier``).
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tawin.checkpoint import atomic_write_json, atomic_write_text
from tawin.metrics.ranking import TOP_KS
from tawin.run.config import PipelineConfig
from tawin.run.done import stage_done
from tawin.run.expected import Expectation, expectation_report
from tawin.run.folder import command_folder
from tawin.run.interrupts import raise_if_interrupted
from tawin.run.stages import eval_stage, popularity_stage, rl_stage, sequential_baseline_stage, sft_stage

SEQUENTIAL_LABELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}
"""Stage name → results-table row of each trained classical baseline, in the order they run."""


def run_pipeline(
    config: PipelineConfig,
    out: Path,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
    expectation: Expectation | None = None,
) -> dict:
    """`tawin run`: the configured stages, resumable, then a results table (and, given an
    `expectation`, each number against its range); returns method → metrics."""
    out = Path(out)
    started = time.time()
    timer = StageTimer(previous=_recorded_costs(out))
    results: dict[str, dict] = {}
    with command_folder(
        config,
        out,
        "run",
        overwrite=overwrite,
        progress=progress,
        resumable=("sft/last", "rl/last"),
        searches=config.stages,
        timed=timer.stage,
    ) as session:
        sft_best = out / "sft" / "best"
        if "sft" in config.stages:
            with timer.stage("sft", done=stage_done(out / "sft", "sft")):
                sft_best = sft_stage(session, config, out / "sft")
            if "eval" in config.stages:
                with timer.stage("eval sft", done=stage_done(out / "eval" / "sft", "eval")):
                    results["SFT"] = eval_stage(session, config, sft_best, out / "eval" / "sft")
        if "rl" in config.stages:
            with timer.stage("rl", done=stage_done(out / "rl", "rl")):
                rl_final = rl_stage(session, config, sft_best, out / "rl")
            if "eval" in config.stages:
                with timer.stage("eval rl", done=stage_done(out / "eval" / "rl", "eval")):
                    results[rl_label(config)] = eval_stage(session, config, rl_final, out / "eval" / "rl")
        if "popularity" in config.stages:
            with timer.stage("popularity"):
                results["Popularity"] = popularity_stage(session, config, out / "eval" / "popularity")
        for kind in (kind for kind in SEQUENTIAL_LABELS if kind in config.stages):
            with timer.stage(kind, done=stage_done(out / "eval" / kind, "baseline")):
                results[SEQUENTIAL_LABELS[kind]] = sequential_baseline_stage(session, config, kind, out / "eval" / kind)
        total = time.time() - started + timer.carried_seconds
        if session.dist.is_main:
            report = results_markdown(config, results, timer, total)
            atomic_write_text(out / "results.md", report)
            atomic_write_json(
                out / "results.json", {"results": results, "stages": timer.records, "total_seconds": round(total, 1)}
            )
            log(report)
            if expectation is not None:
                log(expectation_report(results, expectation))
    return results


def _recorded_costs(out: Path) -> dict[str, dict]:
    """Stage → its cost record in an earlier results.json of `out` (empty when there is none to trust)."""
    try:
        records = json.loads((out / "results.json").read_text())["stages"]
        return {record["stage"]: record for record in records if isinstance(record.get("seconds"), (int, float))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def rl_label(config: PipelineConfig) -> str:
    """The RL method's row label: TAWin with its σ*, τ and negatives; ReRe; or GRPO with its negatives."""
    rl = config.rl
    if rl.weighting == "tawin":
        return f"TAWin (σ*={rl.resolved_anchor}, τ={rl.tau:g}, {rl.negatives})"
    if rl.reward == "rank":
        return "ReRe (beam, rank reward)"
    return f"GRPO ({rl.negatives} negatives)"


def results_markdown(config: PipelineConfig, results: dict, timer: StageTimer, total: float) -> str:
    """results.md: the table of every evaluated method, the rows evaluated and each stage's cost."""
    split = config.eval.split
    lines = [f"## Results on {config.data.dataset} / {split} ({config.eval.num_beams} beams, full catalogue)", ""]
    if results:
        first = next(iter(results.values()))
        ks = tuple(k for k in TOP_KS.reported if all(f"recall@{k}" in m for m in results.values())) or tuple(
            config.eval.ks
        )
        lines += [results_table(results, ks), "", f"rows evaluated: {first['n_rows']}", ""]
    lines += ["## Cost of each stage", "", timer.table(), "", f"total wall-clock: {total:.0f} s ({total / 60:.1f} min)"]
    return "\n".join(lines) + "\n"


def results_table(results: dict[str, dict], ks=TOP_KS.reported) -> str:
    """Markdown table: one row per method, Recall@K and NDCG@K columns."""
    header = "| method | " + " | ".join(f"Recall@{k}" for k in ks) + " | " + " | ".join(f"NDCG@{k}" for k in ks) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(ks))]
    for method, metrics in results.items():
        cells = [f"{metrics[f'recall@{k}']:.4f}" for k in ks] + [f"{metrics[f'ndcg@{k}']:.4f}" for k in ks]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class StageTimer:
    """Wall-clock and peak RSS of each stage, in the order they ran.

    A stage that was already done (`done`) and has a record from an earlier run in `previous`
    keeps that record (marked ``earlier: true``): its cost is what it took then, not the moment
    this rerun took to skip it."""

    previous: dict = field(default_factory=dict)
    records: list = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, done: bool = False) -> Iterator[None]:
        """Time the block as the stage `name` (a stage that raises is not recorded); `done`: it was
        finished before this run, so an earlier record of it is kept."""
        raise_if_interrupted()  # an interrupt that a library swallowed stops the run before its next stage
        started = time.time()
        yield
        if done and name in self.previous:
            self.records.append({**self.previous[name], "earlier": True})
        else:
            self.records.append(
                {"stage": name, "seconds": round(time.time() - started, 1), "peak_rss_mb": round(peak_rss_mb())}
            )

    @property
    def carried_seconds(self) -> float:
        """The seconds of the stages whose cost comes from an earlier run."""
        return sum(record["seconds"] for record in self.records if record.get("earlier"))

    def table(self) -> str:
        lines = ["| stage | wall-clock (s) | peak RSS so far (MB) |", "|---|---:|---:|"]
        lines += [
            f"| {r['stage']}{' (earlier run)' if r.get('earlier') else ''} | {r['seconds']:.1f} | {r['peak_rss_mb']} |"
            for r in self.records
        ]
        return "\n".join(lines)
