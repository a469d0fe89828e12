"""`tawin` command line: data, items, sft, rl, eval, recommend, run, experiment.

Every subcommand that trains or evaluates reads one YAML config (`--config`, sections `data`,
`model`, `sft`, `rl`, `eval`; see `configs/`), then `--set section.field=value` overrides, then
the subcommand's own flags. User mistakes exit with code 2 and one paragraph, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import get_args

from tawin.errors import UserError
from tawin.runtime import quiet_libraries


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (sections data, model, sft, rl, eval; see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override one config field (repeatable)")
    parser.add_argument("--dataset", help="shorthand for --set data.dataset=… (a shipped name such as 'industrial', or a folder)")
    parser.add_argument("--model", help="shorthand for --set model.name_or_path=… (any Hugging Face causal LM name or local folder)")
    parser.add_argument("--seed", type=int, help="shorthand for --set seed=…")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def _load_pipeline_config(args) -> "PipelineConfig":
    from tawin.config import load_config
    from tawin.run.config import PipelineConfig

    overrides = list(args.set)
    if getattr(args, "dataset", None):
        overrides.append(f"data.dataset={args.dataset}")
    if getattr(args, "model", None):
        overrides.append(f"model.name_or_path={args.model}")
    if getattr(args, "seed", None) is not None:
        overrides.append(f"seed={args.seed}")
    for name, key in (("split", "eval.split"), ("beams", "eval.num_beams")):
        if getattr(args, name, None) is not None:
            overrides.append(f"{key}={getattr(args, name)}")
    if getattr(args, "diagnostics", False):
        overrides.append("eval.diagnostics=true")
    return load_config(PipelineConfig, args.config, overrides)


def cmd_run(args) -> int:
    from tawin.run.pipeline import run_pipeline

    config = _load_pipeline_config(args)
    run_pipeline(config, Path(args.out), overwrite=args.overwrite, progress=not args.no_progress)
    return 0


def cmd_sft(args) -> int:
    from tawin.run.folder import RunFolder
    from tawin.run.session import Session
    from tawin.run.stages import sft_stage

    config = _load_pipeline_config(args)
    out = Path(args.out)
    session = Session.open(config, not args.no_progress)  # a bad dataset fails before the folder is touched
    with RunFolder(out, config, args.overwrite, kind="sft"):
        best = sft_stage(session, config, out)
    print(f"best checkpoint: {best}")
    return 0


def cmd_rl(args) -> int:
    from tawin.models.build import check_checkpoint
    from tawin.run.folder import RunFolder
    from tawin.run.session import Session
    from tawin.run.stages import rl_stage

    config = _load_pipeline_config(args)
    check_checkpoint(args.init)  # before the output folder is touched
    out = Path(args.out)
    session = Session.open(config, not args.no_progress)  # a bad dataset fails before the folder is touched
    with RunFolder(out, config, args.overwrite, kind="rl"):
        final = rl_stage(session, config, Path(args.init), out)
    print(f"final checkpoint: {final}")
    return 0


def cmd_eval(args) -> int:
    from tawin.metrics.ranking import DEFAULT_KS
    from tawin.models.build import check_checkpoint
    from tawin.run.folder import RunFolder
    from tawin.run.pipeline import results_table
    from tawin.run.session import Session
    from tawin.run.stages import eval_stage, popularity_stage

    config = _load_pipeline_config(args)
    if args.checkpoint != "popularity":
        check_checkpoint(args.checkpoint)  # before the output folder is touched
    out = Path(args.out)
    session = Session.open(config, not args.no_progress)  # a bad dataset fails before the folder is touched
    with RunFolder(out, config, args.overwrite, kind="eval"):
        if args.checkpoint == "popularity":
            metrics = popularity_stage(session, config, out)
        else:
            metrics = eval_stage(session, config, Path(args.checkpoint), out)
    ks = tuple(k for k in DEFAULT_KS if f"recall@{k}" in metrics)
    print(results_table({args.checkpoint: metrics}, ks))
    extra = {k: v for k, v in metrics.items() if k.startswith(("auc", "opauc", "wpauc", "exact_"))}
    if extra:
        print("diagnostics (exact full-catalogue scores): " + ", ".join(f"{k}={v:.4f}" for k, v in extra.items()))
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.jsonl'}")
    return 0


def cmd_recommend(args) -> int:
    import numpy as np

    from tawin.decoding.beam import constrained_beam_search
    from tawin.errors import DataError
    from tawin.models.batching import item_positions
    from tawin.models.prompt import encode_prompts, left_pad, render_prompt
    from tawin.run.session import Session

    config = _load_pipeline_config(args)
    try:
        history = [int(x) for x in args.history.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"--history {args.history!r} must be item ids separated by commas, e.g. --history 117,118,130") from None
    session = Session.open(config, progress=False)
    items = session.dataset.items
    known = set(items.item_id.tolist())
    unknown = [i for i in history if i not in known]
    if unknown or not history:
        raise DataError(f"--history: item(s) {unknown or '(none)'} not in the catalogue of {config.data.dataset} ({len(items)} items); pass 1–10 known item ids.")
    recommender = session.load(args.checkpoint)
    if args.k > len(items):
        raise UserError(f"--k {args.k} exceeds the catalogue's {len(items)} items; lower --k.")
    positions = item_positions(items, np.array(history[-10:])).tolist()
    prompt = render_prompt(positions, recommender.codec.prompt_text)
    ids, mask = left_pad(encode_prompts(recommender.tokenizer, [prompt], config.model.max_prompt_tokens), recommender.codec.pad_id)
    result = constrained_beam_search(recommender.model, recommender.codec.on(session.device)[0], ids.to(session.device), mask.to(session.device), args.k)
    print("history:")
    for item in history[-10:]:
        print(f"  {item:>6}  {items.title[positions[history[-10:].index(item)]][:90]}")
    print(f"top-{args.k} next items:")
    for rank, (position, score) in enumerate(zip(result.items_BK[0].tolist(), result.scores_BK[0].tolist()), start=1):
        print(f"  {rank:>2}. {int(items.item_id[position]):>6}  logp={score:8.3f}  {items.title[position][:90]}")
    return 0


def cmd_baseline(args) -> int:
    from tawin.baselines.popularity import evaluate_popularity
    from tawin.baselines.sequential import SequentialBaselineConfig, run_baseline
    from tawin.checkpoint import atomic_write_json
    from tawin.config import load_config
    from tawin.data.io import load_dataset
    from tawin.run.config import dataset_path
    from tawin.run.pipeline import results_table

    config = load_config(SequentialBaselineConfig, args.config, args.set)
    dataset = load_dataset(dataset_path(args.dataset))
    if args.kind == "popularity":
        result = {split: evaluate_popularity(dataset, split) for split in ("valid", "test")}
    else:
        result = run_baseline(args.kind, dataset, config)
    out = Path(args.out)
    atomic_write_json(out / "metrics.json", result["test"])
    atomic_write_json(out / "result.json", {k: v for k, v in result.items() if k != "config"})
    print(results_table({f"{args.kind} (test)": result["test"], f"{args.kind} (valid)": result["valid"]}))
    return 0


def cmd_data_import(args) -> int:
    from tawin.data.importers import import_dataset
    from tawin.data.io import save_dataset

    dataset = import_dataset(args.source, args.name)
    save_dataset(dataset, args.out)
    print(f"wrote {args.out}: {len(dataset.items)} items; " + ", ".join(f"{k} {len(v)} rows" for k, v in dataset.splits.items()))
    if not all(dataset.items.sid):
        print(f"the items have no semantic IDs yet: run `tawin items build-sids {args.out} --out <folder>`")
    return 0


def cmd_data_export(args) -> int:
    from tawin.data.io import load_dataset
    from tawin.data.rere_export import export_rere_csv
    from tawin.run.config import dataset_path

    dataset = load_dataset(dataset_path(args.dataset), allow_empty_splits=True, require_sids=False)
    export_rere_csv(dataset, args.out, args.stem, with_index=not args.no_index)
    print(f"wrote {args.out}: ReRe CSV splits ({', '.join(f'{k} {len(v)} rows' for k, v in dataset.splits.items())}) and info/ for {len(dataset.items)} items")
    return 0


def cmd_data_show(args) -> int:
    from tawin.data.io import load_dataset
    from tawin.run.config import dataset_path

    dataset = load_dataset(dataset_path(args.dataset), allow_empty_splits=True)
    print(f"{dataset.name}: {len(dataset.items)} items, SID depth {len(dataset.items.sid[0])}")
    for name, split in dataset.splits.items():
        stamps = split.timestamp[split.timestamp >= 0]
        span = ""
        if len(stamps):
            import datetime as dt

            span = f", targets {dt.datetime.utcfromtimestamp(int(stamps.min())):%Y-%m-%d} → {dt.datetime.utcfromtimestamp(int(stamps.max())):%Y-%m-%d}"
        print(f"  {name:5}: {len(split):6} rows, {len(set(split.user.tolist())):5} users, mean history {split.history_len.mean():.2f}{span}")
    return 0


def cmd_build_sids(args) -> int:
    from tawin.config import load_config
    from tawin.items.sids import SIDConfig, build_sids_for_dataset
    from tawin.run.config import dataset_path

    config = load_config(SIDConfig, args.config, args.set)
    source = dataset_path(args.dataset) if not Path(args.dataset).exists() else Path(args.dataset)
    stats = build_sids_for_dataset(source, args.out, config, show_progress=not args.no_progress)
    print(f"wrote {args.out} with built semantic IDs: " + ", ".join(f"{k}={v}" for k, v in stats.items() if not isinstance(v, (list, dict))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tawin.experiments.cli import add_experiment_parser

    parser = argparse.ArgumentParser(prog="tawin", description="RL for LLM generative recommenders: GRPO, ReRe and TAWin (windowed partial AUC).")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_data_parsers(commands)
    _add_model_parsers(commands)
    add_experiment_parser(commands)
    return parser


def _add_data_parsers(commands) -> None:
    """`tawin data import|export|prepare|show` and `tawin items build-sids`."""
    from tawin.data.prepare import add_prepare_arguments, prepare_main

    data = commands.add_parser("data", help="import, prepare and inspect datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("import", help="MiniOneRec .inter + index.json, ReRe CSV splits or MiniOneRec CSV splits → canonical dataset folder")
    p.add_argument("source", help="folder holding minionerec/ (and optionally rere/), or train/ valid/ test/ CSV splits, e.g. ../shared/data/Industrial_and_Scientific")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--name", help="dataset name, and the file-name prefix that picks files when a folder holds several (default: from the file names)")
    p.set_defaults(func=cmd_data_import)
    p = data.add_parser("export", help="dataset folder → ReRe CSV splits (train/ valid/ test/ info/, plus index/ with the SIDs)")
    p.add_argument("dataset", help="dataset folder (or shipped name)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--stem", help="file name of the CSVs (default: the dataset name); ReRe's scripts want <category>_…11")
    p.add_argument("--no-index", action="store_true", help="write no index/ folder (SIDs, descriptions)")
    p.set_defaults(func=cmd_data_export)
    p = data.add_parser("prepare", help="raw reviews/logs → the paper's protocol → dataset folder (then: tawin items build-sids)")
    add_prepare_arguments(p)
    p.set_defaults(func=prepare_main)
    p = data.add_parser("show", help="summary of a dataset")
    p.add_argument("dataset", nargs="?", default="industrial")
    p.set_defaults(func=cmd_data_show)

    items = commands.add_parser("items", help="semantic IDs").add_subparsers(dest="items_command", required=True)
    p = items.add_parser("build-sids", help="embed item text (all-MiniLM-L6-v2, offline) and quantise with residual k-means")
    p.add_argument("dataset", help="dataset folder (or shipped name)")
    p.add_argument("--out", required=True, help="output dataset folder with the new semantic IDs")
    p.add_argument("--config", help="YAML with SIDConfig fields")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_build_sids)


def _add_model_parsers(commands) -> None:
    """`tawin sft|rl|run|eval|baseline|recommend`."""
    from tawin.baselines.sequential import BaselineKind
    from tawin.eval.config import EvalSplit

    for name, function, text in (("sft", cmd_sft, "supervised fine-tuning (next-item generation)"),
                                 ("rl", cmd_rl, "RL from an SFT checkpoint (GRPO / ReRe / TAWin)"),
                                 ("run", cmd_run, "the configured pipeline: SFT → eval → RL → eval → table")):
        p = commands.add_parser(name, help=text)
        _config_arguments(p)
        p.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
        p.add_argument("--overwrite", action="store_true", help="replace a run with a different config in --out")
        if name == "rl":
            p.add_argument("--init", required=True, help="SFT checkpoint folder (e.g. RUN/sft/best)")
        p.set_defaults(func=function)

    p = commands.add_parser("eval", help="full-catalogue constrained beam search: Recall@K, NDCG@K (+ AUC/OPAUC/WPAUC)")
    _config_arguments(p)
    p.add_argument("--checkpoint", required=True, help="model folder, or 'popularity' for the popularity baseline")
    p.add_argument("--out", required=True)
    p.add_argument("--split", choices=get_args(EvalSplit))
    p.add_argument("--beams", type=int, help="shorthand for --set eval.num_beams=…")
    p.add_argument("--diagnostics", action="store_true", help="exact scores of every item: auc, opauc, wpauc@K")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("baseline", help="classical baselines on the same split and metric code: popularity, sasrec, gru4rec")
    p.add_argument("kind", choices=["popularity", *get_args(BaselineKind)])
    p.add_argument("--dataset", default="industrial")
    p.add_argument("--out", required=True)
    p.add_argument("--config", help="YAML with SequentialBaselineConfig fields")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.set_defaults(func=cmd_baseline)

    p = commands.add_parser("recommend", help="top-K items (with titles) for a history")
    _config_arguments(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--history", required=True, help="item ids, oldest first, e.g. 117,118,130")
    p.add_argument("--k", type=int, default=10)
    p.set_defaults(func=cmd_recommend)


def main(argv: list[str] | None = None) -> int:
    # Sleeping (not spinning) OpenMP workers: on a shared or busy CPU, spinning threads lose their
    # core at every small op and a step can run 10× slower. Set it explicitly to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"tawin: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("tawin: interrupted; rerun the same command to resume from the last checkpoint.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
