"""`tawin experiment CONFIG --out DIR`: run a grid of methods × seeds (× σ*), then write the report.

Layout of DIR (rerun the same command to resume; a cell whose metrics.json exists is skipped)::

    config.yaml             the resolved experiment (RunFolder: locked; a different one is refused)
    results.json            every finished cell: metrics, resolved config, anchor choice, seconds
    report.md, comparison.png, diagnostics.png, anchor_sweep.png
    seed_S/sft/             the seed's one SFT checkpoint (best/, last/, summary.json)
    seed_S/<cell>/          rl/ (checkpoints; sweep/anchor_A/ for best_on_valid), cell.json,
                            predictions.jsonl, metrics.json (written last: the cell's done-marker)

Resumption below the cell level is the stages' own: SFT and RL continue from their ``last/``
checkpoints, and a finished stage (its summary.json present) is not rerun. This module only reads
the command line: :mod:`tawin.experiments.run` runs the experiment.
"""

from __future__ import annotations

from pathlib import Path


def add_experiment_parser(commands) -> None:
    """Register `tawin experiment` on the CLI's subparsers."""
    p = commands.add_parser(
        "experiment", help="a grid of methods × seeds (× σ*) sharing one SFT per seed → results.json, report.md, plots"
    )
    p.add_argument("config", help="experiment YAML (see configs/experiments/)")
    p.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override: seeds=[0], report.goal_k=5, … for experiment keys; anything else (rl.max_steps=2) goes to base",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.add_argument("--overwrite", action="store_true", help="replace an experiment with a different config in --out")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cells run at once, each in its own process (CPU threads are split between them unless "
        "threads is set); the results are those of --jobs 1",
    )
    p.set_defaults(func=cmd_experiment)


def cmd_experiment(args) -> int:
    # Imported here: the CLI imports this module for every command, so torch & co. stay lazy.
    from tawin.errors import ConfigError
    from tawin.experiments.parse import load_experiment
    from tawin.experiments.run import run_experiment

    if args.jobs < 1:
        raise ConfigError(f"--jobs={args.jobs} must be ≥ 1 (cells run at once)")
    experiment = load_experiment(args.config, args.set)
    results = run_experiment(
        experiment, Path(args.out), overwrite=args.overwrite, progress=not args.no_progress, jobs=args.jobs
    )
    print(
        f"{len(results['cells'])} cells finished; wrote "
        f"{Path(args.out) / 'results.json'} and {Path(args.out) / 'report.md'}"
    )
    return 0
