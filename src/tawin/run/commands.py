"""Orchestration — the body of each `tawin` subcommand that trains, evaluates or recommends.

:mod:`tawin.cli` reads the command line and calls these with the parsed arguments. Each command
checks everything it can before it touches ``--out`` (config, dataset, checkpoint, model name),
then works inside a :class:`~tawin.run.folder.RunFolder` whose identity includes the provenance
of its inputs (:mod:`tawin.run.provenance`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tawin.errors import ConfigError, UserError

if TYPE_CHECKING:  # imported where used, so that `tawin --help` does not load them
    from tawin.run.config import PipelineConfig
    from tawin.run.recommend import Recommender

KEPT_MODEL_SETTINGS = ("model.max_prompt_tokens",)
"""The `model.*` settings that a command loading a checkpoint still uses (prompt truncation)."""


def load_pipeline_config(args, command: str) -> PipelineConfig:
    """Defaults < ``--config`` < ``--set`` < the shorthand flags, validated as a whole; then the
    small-data variant where the train split is small enough (:mod:`tawin.run.small_data`), except
    for `tawin recommend`, which trains nothing. Its entries replace the YAML file's values, not
    those of ``--set`` and the shorthand flags, which the user gave on purpose."""
    from tawin.config import load_config
    from tawin.run.config import PipelineConfig
    from tawin.run.small_data import with_small_data

    overrides = list(args.set)
    if getattr(args, "dataset", None) is not None:
        overrides.append(f"data.dataset={args.dataset}")
    if getattr(args, "model", None) is not None:
        overrides.append(f"model.name_or_path={args.model}")
    if getattr(args, "seed", None) is not None:
        overrides.append(f"seed={args.seed}")
    if command == "eval":
        if args.split is not None:
            overrides.append(f"eval.split={args.split}")
        if args.beams is not None:
            overrides.append(f"eval.num_beams={args.beams}")
        if args.diagnostics:
            overrides.append("eval.diagnostics=true")
    config = load_config(PipelineConfig, args.config, overrides)
    return config if command == "recommend" else with_small_data(config, overrides)


def with_checkpoint_model(args, config, checkpoint: str | Path, command: str):
    """`config` with the model section the checkpoint was saved with (what is actually used), keeping
    the prompt truncation of `config`; the checkpoint is checked first (UserError if unreadable).

    `--model` and `--set model.*` cannot change a model that is loaded rather than built: one that
    differs from the checkpoint's value (or any, for the popularity baseline) is a ConfigError."""
    from tawin.models.build import check_checkpoint, checkpoint_config

    saved = None
    if str(checkpoint) != "popularity":
        check_checkpoint(checkpoint)
        saved = checkpoint_config(checkpoint)
    given = (["name_or_path"] if getattr(args, "model", None) is not None else []) + [
        text.split("=", 1)[0].strip()[len("model.") :] for text in args.set if text.strip().startswith("model.")
    ]
    ignored = [
        name
        for name in dict.fromkeys(given)
        if f"model.{name}" not in KEPT_MODEL_SETTINGS
        and (saved is None or getattr(config.model, name) != getattr(saved, name))
    ]
    if ignored and saved is None:
        raise ConfigError(
            f"{', '.join(f'model.{name}' for name in ignored)}: the "
            "popularity baseline uses no model; drop these overrides."
        )
    if ignored:
        shown = ", ".join(
            f"model.{name}={getattr(config.model, name)!r} (the checkpoint has {getattr(saved, name)!r})"
            for name in ignored
        )
        raise ConfigError(
            f"{shown}: `tawin {command}` builds no model; it loads "
            f"{checkpoint}, whose tawin.json fixes the architecture, "
            "name_or_path and item representation (of the model settings only model.max_prompt_tokens, the prompt "
            "truncation, applies). Drop these overrides, or train a model with them (`tawin sft --set model.…`)."
        )
    if saved is None:
        return config
    return replace(config, model=replace(saved, max_prompt_tokens=config.model.max_prompt_tokens))


def cmd_run(args) -> int:
    from tawin.run.expected import read_expectation
    from tawin.run.pipeline import run_pipeline

    config = load_pipeline_config(args, "run")
    expectation = read_expectation(args.expect) if args.expect else None  # a bad file fails before any training
    run_pipeline(
        config, Path(args.out), overwrite=args.overwrite, progress=not args.no_progress, expectation=expectation
    )
    return 0


def cmd_sft(args) -> int:
    from tawin.run.folder import command_folder
    from tawin.run.stages import sft_stage

    config = load_pipeline_config(args, "sft")
    out = Path(args.out)
    with command_folder(
        config,
        out,
        "sft",
        overwrite=args.overwrite,
        progress=not args.no_progress,
        resumable=("last",),
        searches=("sft",),
    ) as session:
        best = sft_stage(session, config, out)
    print(f"best checkpoint: {best}")
    return 0


def cmd_rl(args) -> int:
    from tawin.run.folder import command_folder
    from tawin.run.stages import rl_stage

    config = with_checkpoint_model(
        args, load_pipeline_config(args, "rl"), args.init, "rl"
    )  # before the output folder is touched
    out = Path(args.out)
    with command_folder(
        config,
        out,
        "rl",
        overwrite=args.overwrite,
        progress=not args.no_progress,
        checkpoints={"init": args.init},
        resumable=("last",),
        searches=("rl",),
    ) as session:
        final = rl_stage(session, config, Path(args.init), out)
    print(f"final checkpoint: {final}")
    return 0


def cmd_eval(args) -> int:
    from tawin.metrics.ranking import TOP_KS
    from tawin.run.folder import command_folder
    from tawin.run.pipeline import results_table
    from tawin.run.stages import eval_stage, popularity_stage

    config = with_checkpoint_model(
        args, load_pipeline_config(args, "eval"), args.checkpoint, "eval"
    )  # before the output folder is touched
    popularity = args.checkpoint == "popularity"
    out = Path(args.out)
    with command_folder(
        config,
        out,
        "eval",
        overwrite=args.overwrite,
        progress=not args.no_progress,
        checkpoints={"checkpoint": args.checkpoint},
        searches=() if popularity else ("eval",),
    ) as session:
        if popularity:
            metrics = popularity_stage(session, config, out)
        else:
            metrics = eval_stage(session, config, Path(args.checkpoint), out)
    ks = tuple(k for k in TOP_KS.scored if f"recall@{k}" in metrics)
    print(results_table({args.checkpoint: metrics}, ks))
    extra = {k: v for k, v in metrics.items() if k.startswith(("auc", "opauc", "wpauc", "exact_"))}
    if extra:
        print("diagnostics (exact full-catalogue scores): " + ", ".join(f"{k}={v:.4f}" for k, v in extra.items()))
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.jsonl'}")
    return 0


def cmd_recommend(args) -> int:
    from tawin.errors import DataError
    from tawin.run.recommend import check_records, history_problem, output_file, read_histories, recommend_file

    if (args.history is None) == (args.input is None) or (args.input is None) != (args.output is None):
        raise UserError(
            "pass either --history ITEMS (one history, printed) or "
            "--input FILE.jsonl --output FILE.jsonl (many, written)."
        )
    if args.k < 1 or args.beams < 1:
        raise UserError(
            f"--k {args.k} and --beams {args.beams} must both be ≥ 1 (--k items are shown out of the --beams ranked)."
        )
    if args.input is not None:
        source, target = Path(args.input), Path(args.output)
        records = read_histories(source)
        with output_file(target, source, args.overwrite) as stream:  # checked before the model loads
            recommender = _recommender(args, lambda dataset: check_records(dataset, records, source))
            written = recommend_file(recommender, records, stream, args.k, warn=_warn_on_stderr)
        print(f"wrote {target}: the top {args.k} of {recommender.beams} ranked items for each of {written} histories")
        return 0
    try:
        history = [int(x) for x in args.history.replace(",", " ").split()]
    except ValueError:
        raise UserError(
            f"--history {args.history!r} must be item ids separated by commas, e.g. --history 117,118,130"
        ) from None

    def check_history(dataset) -> None:
        problem = history_problem(dataset, history)
        if problem:
            raise DataError(f"--history: {problem}")

    recommender = _recommender(args, check_history)
    ranked = recommender.recommend([history], args.k, warn=_warn_on_stderr)[0]
    title_of = dict(zip(recommender.dataset.items.item_id.tolist(), recommender.dataset.items.title))
    print("history:")
    for item in ranked.history:
        print(f"  {item:>6}  {title_of[item][:90]}")
    print(f"top-{args.k} next items (of {recommender.beams} beams):")
    for rank, (item, score, title) in enumerate(zip(ranked.items, ranked.scores, ranked.titles), start=1):
        print(f"  {rank:>2}. {item:>6}  logp={score:8.3f}  {title[:90]}")
    return 0


def _recommender(args, check_histories) -> Recommender:
    """`tawin recommend`'s model and catalogue; `check_histories(dataset)` runs before the model loads."""
    from tawin.run.recommend import Recommender
    from tawin.run.session import Session

    config = load_pipeline_config(args, "recommend")
    session = Session.open(config, progress=False)
    check_histories(session.dataset)
    config = with_checkpoint_model(args, config, args.checkpoint, "recommend")
    recommender = Recommender(
        session.load(args.checkpoint), session.dataset, args.beams, max_prompt_tokens=config.model.max_prompt_tokens
    )
    if args.k > recommender.beams:
        raise UserError(
            f"--k {args.k} exceeds the {recommender.beams} ranked items (--beams {args.beams}, catalogue "
            f"{len(session.dataset.items)} items); lower --k or raise --beams."
        )
    return recommender


def _warn_on_stderr(note: str) -> None:
    import sys

    print(f"tawin: warning: {note}", file=sys.stderr)


def cmd_baseline(args) -> int:
    from tawin.baselines.sequential import SequentialBaselineConfig
    from tawin.config import load_config
    from tawin.run.baseline import baseline_run, run_baseline_folder
    from tawin.run.pipeline import results_table

    settings_given = bool(args.set) or args.config is not None
    sequential = load_config(SequentialBaselineConfig, args.config, args.set) if args.kind != "popularity" else None
    run = baseline_run(args.kind, args.dataset, sequential, settings_given, args.latest_train_rows)
    result = run_baseline_folder(run, Path(args.out), overwrite=args.overwrite)
    print(results_table({f"{args.kind} (test)": result["test"], f"{args.kind} (valid)": result["valid"]}))
    return 0


def cmd_config_show(args) -> int:
    from tawin.config import render_config

    print(render_config(load_pipeline_config(args, "config"), args.section), end="")
    return 0
