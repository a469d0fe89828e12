"""The paper's regime on one GPU — what `gpu_paper.py` writes: report.md, results.json,
comparison.png and logs.tar.gz, and the speed benchmarks' section that `add-benchmarks` adds.

The method table, gains, goal line and paired bootstrap are the experiment report's own
(:func:`tawin.experiments.report.write_report` over :func:`tawin.experiments.results.collect_results`);
this module puts in front of it what the budgets did to each stage.
"""

from __future__ import annotations

import json
import platform
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

BENCHMARKS_MARK = "<!-- speed benchmarks -->"
LOG_SUFFIXES = (".jsonl", ".json", ".yaml")
INCOMPLETE = " (incomplete: rerun the same command to finish)"
"""The experiment report's note on missing cells; a rerun of gpu_paper.py starts afresh instead."""


@dataclass
class RunState:
    """What a `gpu_paper.py run` did; the fields after `records` are None when the probe failed."""

    config_file: str
    dry_run: bool
    overrides: list[str]
    records: list
    """StageRecord of every stage run, in order."""
    seconds: float
    config: object = None
    """The PipelineConfig before the plan's sizes (what the budgets cut from)."""
    experiment: object = None
    """The experiment grid with the plan's sizes."""
    rates: object = None
    plan: object = None
    n_rows: dict | None = None
    """Rows of each split."""


def _cut_lines(config, plan, n_rows: dict[str, int]) -> list[str]:
    """What the plan cut from the config to fit the budgets, one line per stage."""
    sft, rl, evaluation = config.sft, config.rl, config.eval
    rows = plan["sft_max_train_rows"] or n_rows["train"]
    return [
        f"- SFT: {plan['sft_epochs']} of up to {sft.epochs} epochs, {rows} of {n_rows['train']} train rows per epoch "
        f"({plan['sft_steps']} steps of {sft.batch_size}); valid "
        f"scored on {plan['sft_eval_rows']} rows after each epoch.",
        f"- RL: {plan['rl_steps']} steps of {rl.max_steps or 'a whole epoch of'} "
        f"({rl.batch_size} prompts × G = {rl.group_size}); "
        f"{plan['rl_eval_rows']} valid rows scored at the end.",
        f"- Evaluation: {plan['eval_rows'] or n_rows['test']} of "
        f"{n_rows['test']} test rows (the same seeded rows for every method), "
        f"{evaluation.num_beams} beams over the full catalogue.",
    ]


def _stage_table(records) -> str:
    lines = ["| stage | budget (s) | estimate (s) | wall-clock (s) | outcome |", "|---|---:|---:|---:|---|"]
    for r in records:
        outcome = (
            "**stopped at its budget**" if r.stopped_at_budget else f"**failed**: {r.error}" if r.error else "done"
        )
        estimate = (
            "—" if r.estimate_s is None else f"{r.estimate_s:.0f}" if r.estimate_s >= 10 else f"{r.estimate_s:.1f}"
        )
        lines.append(
            f"| {r.stage} | {r.budget_s:.0f} | {estimate} | "
            f"{r.seconds:.1f} | {outcome}{'; ' + r.note if r.note else ''} |"
        )
    return "\n".join(lines)


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU ({platform.processor() or platform.machine()}, torch {torch.__version__})"


def write_outputs(out: Path, work: Path, run: RunState) -> dict:
    """report.md, results.json, comparison.png and logs.tar.gz in `out`; returns results.json's data."""
    from tawin.experiments.grid import expand_cells
    from tawin.experiments.report import write_report
    from tawin.experiments.results import collect_results

    results = {
        "name": "gpu-paper",
        "config_file": run.config_file,
        "dry_run": run.dry_run,
        "device": _device(),
        "overrides": run.overrides,
        "seconds_total": round(run.seconds, 1),
        "rates": asdict(run.rates) if run.rates else None,
        "plan": run.plan.as_dict() if run.plan else None,
        "n_rows": run.n_rows,
        "stages": [asdict(r) for r in run.records],
        "methods": {},
    }
    body = ["Nothing was evaluated: the probe did not finish (see the stage table and run.log)."]
    if run.experiment is not None:
        experiment_results = collect_results(work, run.experiment, expand_cells(run.experiment))
        write_report(work, experiment_results)
        results["experiment"] = experiment_results
        results["methods"] = {entry["label"]: entry["metrics"] for entry in experiment_results["cells"].values()}
        body = [
            "## What the budgets cut",
            "",
            *_cut_lines(run.config, results["plan"], run.n_rows),
            "",
            *(work / "report.md").read_text().replace(INCOMPLETE, " (the others: see Stages)").splitlines()[1:],
        ]
        if (work / "comparison.png").exists():
            shutil.copyfile(work / "comparison.png", out / "comparison.png")
    banner = (
        "**Dry run** (CPU, the tiny built-in model, a few steps and rows): it checks that the script works; "
        "its numbers mean nothing."
        if run.dry_run
        else ""
    )
    lines = [
        f"# The paper's regime on one GPU: `{run.config_file}`",
        "",
        *([banner, ""] if banner else []),
        f"Device: {results['device']}. Wall-clock of the run: "
        f"{run.seconds:.0f} s. Command: `bash benchmarks/gpu_paper.sh` "
        "(probe → plan → SFT → per method RL and test evaluation; each stage stopped at its budget).",
        "",
        "## Stages",
        "",
        _stage_table(run.records),
        "",
    ]
    if run.rates:
        lines += [
            "Probe (seconds per unit): " + ", ".join(f"{k} {v:.4g}" for k, v in asdict(run.rates).items()) + ".",
            "",
        ]
    (out / "report.md").write_text("\n".join(lines + body).rstrip() + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_logs(work, out / "logs.tar.gz")
    return results


def write_logs(work: Path, path: Path) -> None:
    """Every stage's logs and results (not the checkpoints: folders holding tawin.json are skipped)."""
    checkpoints = {p.parent for p in work.rglob("tawin.json")}
    with tarfile.open(path, "w:gz") as archive:
        for file in sorted(work.rglob("*")):
            if (
                file.is_file()
                and file.suffix in LOG_SUFFIXES
                and not any(parent in checkpoints for parent in file.parents)
            ):
                archive.add(file, arcname=str(file.relative_to(work)))


def _decode_lines(summary: dict) -> list[str]:
    lines = [
        f"`decode_speed.py` ({summary.get('device')}, {summary.get('prompt_rows')} "
        f"test rows, {summary.get('repeats')} repeats): "
        "our constrained beam search against HF `generate` with the same trie.",
        "",
        "| model | beams | dtype | ours rows/s | HF rows/s | speedup | identical top items |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['beams']} | {r['dtype']} | "
        f"{r['rows_per_s_ours']} | {r['rows_per_s_hf']} | **{r['speedup']}×** | "
        f"{r['identical_fraction']} |"
        for r in summary.get("results", [])
    ]
    return lines


def _rl_step_lines(summary: dict) -> list[str]:
    return [
        f"`rl_step_speed.py` ({summary['model']['device']}, "
        f"{summary['prompts_per_step']} prompts × G = {summary['group_size']}): "
        f"the library's RL step {summary['median_s_ours']} s, TRL `GRPOTrainer` {summary['median_s_trl']} s per step: "
        f"**{summary['ratio']}×** (paired median {summary['ratio_paired_median']}×; same first rollout: "
        f"{summary['same_first_rollout']})."
    ]


def add_benchmarks(out: Path, statuses: dict[str, int | None], notes: dict[str, str] | None = None) -> None:
    """Add decode.json and rl_step.json of `out` to its report.md (one section, replaced on rerun) and results.json."""
    notes = notes or {}
    results = json.loads((out / "results.json").read_text())
    lines, found = [BENCHMARKS_MARK, "## Speed benchmarks (same machine, after the stages)", ""], {}
    for name, render in (("decode", _decode_lines), ("rl_step", _rl_step_lines)):
        path, status = out / f"{name}.json", statuses.get(name)
        try:
            found[name] = json.loads(path.read_text())
            lines += [*render(found[name]), ""]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            if notes.get(name):
                why = notes[name]
            else:
                why = (
                    "not run"
                    if status is None
                    else f"exit status {status}" + (" (its time limit)" if status == 124 else "")
                ) + "; run.log has its output"
            found[name] = {"missing": why}
            lines += [f"`{name}_speed.py`: no result ({why}).", ""]
    results["benchmarks"] = found
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report = (out / "report.md").read_text().split(BENCHMARKS_MARK)[0].rstrip()
    (out / "report.md").write_text(report + "\n\n" + "\n".join(lines).rstrip() + "\n")
