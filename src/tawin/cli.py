"""`tawin` command line: data, items, config, sft, rl, eval, baseline, recommend, run, experiment.

Every subcommand that trains or evaluates reads one YAML config (`--config`, sections `data`,
`model`, `sft`, `rl`, `eval`, `small_data`; see `configs/`), then `--set section.field=value` overrides, then
the subcommand's own flags. User mistakes exit with code 2 and one paragraph, no traceback. This
module reads the command line; the commands' bodies are in :mod:`tawin.run.commands`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from tawin import __version__
from tawin.errors import UserError
from tawin.runtime import quiet_libraries, use_openmp_settings


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            (not action.option_strings and action.nargs != "?")
            or action.required
            or "default" in text
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return text
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        return f"{text} (default: {'none' if action.default in (None, []) else '%(default)s'})"


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose help shows defaults (subcommand parsers are made of this class too)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _command(name: str):
    """The body of `tawin NAME`, imported when it runs (so that `tawin --help` stays fast)."""

    def run(args) -> int:
        from tawin.run import commands

        return getattr(commands, name)(args)

    return run


def _config_arguments(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    parser.add_argument(
        "--config",
        help="YAML config (sections data, model, sft, rl, eval, small_data; see configs/) "
        "(default: none, the built-in defaults)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one config field (repeatable)",
    )
    parser.add_argument(
        "--dataset",
        help="shorthand for --set data.dataset=… (a shipped name such as 'industrial', or a folder) "
        "(default: the config's data.dataset, industrial)",
    )
    parser.add_argument(
        "--model",
        help="shorthand for --set model.name_or_path=… (any Hugging Face causal LM name or local folder) "
        "(default: the config's, null = the built-in small model)",
    )
    parser.add_argument("--seed", type=int, help="shorthand for --set seed=… (default: the config's seed, 0)")
    if progress:
        parser.add_argument(
            "--no-progress", action="store_true", help="log lines (step/total, loss, ETA) instead of progress bars"
        )


def cmd_data_import(args) -> int:
    from tawin.data.formats.out_folder import check_dataset_out
    from tawin.data.formats.registry import TAWIN_FOLDER, import_dataset

    check_dataset_out(Path(args.out), Path(args.source), args.overwrite)  # before reading: a refusal comes at once
    dataset = import_dataset(args.source, args.name)
    TAWIN_FOLDER.write(dataset, args.out)
    print(
        f"wrote {args.out}: {len(dataset.items)} items; "
        + ", ".join(f"{k} {len(v)} rows" for k, v in dataset.splits.items())
    )
    if not all(dataset.items.sid):
        print(f"the items have no semantic IDs yet: run `tawin items build-sids {args.out} --out <folder>`")
    return 0


def cmd_data_export(args) -> int:
    from tawin.data.formats.registry import CSV_SPLITS, TAWIN_FOLDER
    from tawin.run.config import dataset_path

    dataset = TAWIN_FOLDER.read(dataset_path(args.dataset), allow_empty_splits=True, require_sids=False)
    CSV_SPLITS.write(dataset, args.out, args.stem, with_index=not args.no_index)
    print(
        f"wrote {args.out}: ReRe CSV splits "
        f"({', '.join(f'{k} {len(v)} rows' for k, v in dataset.splits.items())}) "
        f"and info/ for {len(dataset.items)} items"
    )
    return 0


def cmd_data_show(args) -> int:
    from tawin.data.protocol.summary import dataset_summary
    from tawin.run.config import dataset_path

    print(dataset_summary(dataset_path(args.dataset)))
    return 0


def cmd_build_sids(args) -> int:
    from tawin.config import load_config
    from tawin.items.sids import SIDConfig, build_sids_for_dataset
    from tawin.run.config import dataset_path

    config = load_config(SIDConfig, args.config, args.set)
    source = dataset_path(args.dataset) if not Path(args.dataset).exists() else Path(args.dataset)
    stats = build_sids_for_dataset(source, args.out, config, show_progress=not args.no_progress)
    print(
        f"wrote {args.out} with built semantic IDs: "
        + ", ".join(f"{k}={v}" for k, v in stats.items() if not isinstance(v, (list, dict)))
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tawin.experiments.cli import add_experiment_parser

    parser = Parser(
        prog="tawin", description="RL for LLM generative recommenders: GRPO, ReRe and TAWin (windowed partial AUC)."
    )
    parser.add_argument(
        "--version", action="version", version=f"tawin {__version__}", help="print the version and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    _add_data_parsers(commands)
    _add_model_parsers(commands)
    add_experiment_parser(commands)
    p = commands.add_parser("config", help="the resolved config").add_subparsers(
        dest="config_command", required=True, metavar="COMMAND"
    )
    p = p.add_parser(
        "show", help="print the resolved config (defaults < --config < --set) as YAML, each field with its doc line"
    )
    p.add_argument(
        "section", nargs="?", help="only this section: data, model, sft, rl, eval or small_data (default: everything)"
    )
    _config_arguments(p, progress=False)
    p.set_defaults(func=_command("cmd_config_show"))
    return parser


def _add_data_parsers(commands) -> None:
    """`tawin data import|export|prepare|show` and `tawin items build-sids`."""
    from tawin.data.protocol.prepare import add_prepare_arguments, prepare_main

    command = commands.add_parser("data", help="import, prepare and inspect datasets")
    data = command.add_subparsers(dest="data_command", required=True)
    _add_import_parser(data)
    p = data.add_parser(
        "export", help="dataset folder → ReRe CSV splits (train/ valid/ test/ info/, plus index/ with the SIDs)"
    )
    p.add_argument("dataset", help="dataset folder (or shipped name)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--stem", help="file name of the CSVs (default: the dataset name); ReRe's scripts want <category>_…11"
    )
    p.add_argument("--no-index", action="store_true", help="write no index/ folder (SIDs, descriptions)")
    p.set_defaults(func=cmd_data_export)
    p = data.add_parser(
        "prepare", help="raw reviews/logs → the paper's protocol → dataset folder (then: tawin items build-sids)"
    )
    add_prepare_arguments(p)
    p.set_defaults(func=prepare_main)
    p = data.add_parser(
        "show", help="summary of a dataset: items, rows, users, history lengths, each split's time span"
    )
    p.add_argument(
        "dataset", nargs="?", default="industrial", help="a shipped dataset name or a dataset folder (SIDs not needed)"
    )
    p.set_defaults(func=cmd_data_show)

    items = commands.add_parser("items", help="semantic IDs").add_subparsers(dest="items_command", required=True)
    p = items.add_parser(
        "build-sids", help="embed item text (all-MiniLM-L6-v2, offline) and quantise with residual k-means"
    )
    p.add_argument("dataset", help="dataset folder (or shipped name)")
    p.add_argument("--out", required=True, help="output dataset folder with the new semantic IDs")
    p.add_argument("--config", help="YAML with SIDConfig fields (default: none, the built-in settings)")
    p.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="override one SIDConfig field (repeatable)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_build_sids)


def _add_import_parser(data) -> None:
    p = data.add_parser(
        "import",
        help="MiniOneRec .inter + index.json, ReRe CSV splits or MiniOneRec CSV splits → canonical dataset folder",
    )
    p.add_argument(
        "source",
        help="folder holding minionerec/ (and optionally rere/), or train/ valid/ test/ CSV splits, "
        "e.g. ../shared/data/Industrial_and_Scientific",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output dataset folder: new, empty, or a tawin dataset folder (replaced); any other folder needs "
        "--overwrite, and never SOURCE or a folder above it",
    )
    p.add_argument(
        "--name",
        help="dataset name, and the file-name prefix that picks files when a folder holds several "
        "(default: from the file names)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the contents of a non-empty --out folder that is not a tawin dataset folder; they are kept "
        "aside until the new dataset is written, put back if writing fails",
    )
    p.set_defaults(func=cmd_data_import)


OVERWRITE_HELP = (
    "replace a run whose config, dataset or checkpoint differs; the old contents are kept aside and put back "
    "if the new run fails before its first checkpoint or result"
)


def _add_model_parsers(commands) -> None:
    """`tawin sft|rl|run|eval|baseline|recommend`."""
    from tawin.eval.config import EvalSplit

    for name, text in (
        ("sft", "supervised fine-tuning (next-item generation)"),
        ("rl", "RL from an SFT checkpoint (GRPO / ReRe / TAWin)"),
        ("run", "the configured pipeline: SFT → eval → RL → eval → table"),
    ):
        p = commands.add_parser(name, help=text)
        _config_arguments(p)
        p.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
        p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
        if name == "rl":
            p.add_argument("--init", required=True, help="SFT checkpoint folder (e.g. RUN/sft/best)")
        if name == "run":
            p.add_argument(
                "--expect",
                metavar="FILE",
                help="JSON of expected ranges (method → metric → [low, high]); after the table, print whether "
                "each number lies inside (make demo passes benchmarks/results/demo/expected.json)",
            )
        p.set_defaults(func=_command(f"cmd_{name}"))

    p = commands.add_parser("eval", help="full-catalogue constrained beam search: Recall@K, NDCG@K (+ AUC/OPAUC/WPAUC)")
    _config_arguments(p)
    p.add_argument("--checkpoint", required=True, help="model folder, or 'popularity' for the popularity baseline")
    p.add_argument(
        "--out", required=True, help="output folder: metrics.json, predictions.jsonl (rerun the same command to resume)"
    )
    p.add_argument(
        "--split", choices=get_args(EvalSplit), help="shorthand for --set eval.split=… (default: the config's, test)"
    )
    p.add_argument("--beams", type=int, help="shorthand for --set eval.num_beams=… (default: the config's, 50)")
    p.add_argument("--diagnostics", action="store_true", help="exact scores of every item: auc, opauc, wpauc@K")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=_command("cmd_eval"))
    _add_baseline_parser(commands)
    _add_recommend_parser(commands)


def _add_baseline_parser(commands) -> None:
    from tawin.baselines import BaselineKind

    p = commands.add_parser(
        "baseline", help="classical baselines on the same split and metric code: popularity, sasrec, gru4rec"
    )
    p.add_argument("kind", choices=["popularity", *get_args(BaselineKind)], help="which baseline")
    p.add_argument("--dataset", default="industrial", help="a shipped dataset name or a dataset folder")
    p.add_argument(
        "--latest-train-rows",
        type=int,
        default=0,
        metavar="N",
        help="train on the latest N train rows only, as data.latest_train_rows does for the LLM (default 0: all)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder: metrics.json and predictions.jsonl (test), predictions_valid.jsonl, "
        "result.json (valid and test metrics)",
    )
    p.add_argument(
        "--config",
        help="YAML with SequentialBaselineConfig fields (sasrec, gru4rec) (default: none, the built-in settings)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one SequentialBaselineConfig field (repeatable)",
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=_command("cmd_baseline"))


def _add_recommend_parser(commands) -> None:
    p = commands.add_parser(
        "recommend", help="top-K items (with titles) for a history, or for every history of a JSONL file"
    )
    _config_arguments(p, progress=False)
    p.add_argument("--checkpoint", required=True, help="model folder (e.g. RUN/rl/final)")
    p.add_argument("--history", help="item ids, oldest first, e.g. 117,118,130 (or use --input)")
    p.add_argument("--input", help='JSONL file, one history per line: [117, 118] or {"user": 7, "history": [117, 118]}')
    p.add_argument(
        "--output",
        help="JSONL file written with --input: each input line plus its items and scores; checked "
        "before the model loads, written only once every history is ranked, never the --input file",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output file (without it, one is refused)"
    )
    p.add_argument("--k", type=int, default=10, help="items shown per history, cut from the --beams ranked ones")
    p.add_argument(
        "--beams",
        type=int,
        default=50,
        help="beams of the search = items ranked before the cut to K (at most the catalogue size)",
    )
    p.set_defaults(func=_command("cmd_recommend"))


def _one_line_warnings() -> None:
    """Show each :class:`~tawin.overrides.RenamedSetting` warning as one line, `tawin: warning: …`."""
    import warnings

    from tawin.overrides import RenamedSetting

    show = warnings.showwarning
    if getattr(show, "tawin_one_line", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RenamedSetting):
            print(f"tawin: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    showwarning.tawin_one_line = True
    warnings.showwarning = showwarning


def main(argv: list[str] | None = None) -> int:
    use_openmp_settings()  # before torch loads, which nothing has imported yet
    _one_line_warnings()
    from tawin.run.interrupts import catching_interrupts, interrupt_received, raise_if_interrupted, report_interrupt

    # Entered before building the parser, whose imports take seconds: Ctrl-C during them, or one
    # that a library swallows or turns into another error, still ends the command in one line.
    with catching_interrupts():
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            quiet_libraries()
            code = int(args.func(args) or 0)
            raise_if_interrupted()
            return code
        except UserError as error:
            if interrupt_received():
                return report_interrupt()
            print(f"tawin: error: {error}", file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt:
            return report_interrupt()
        except BaseException:
            if interrupt_received():  # the interrupt surfaced as another error (e.g. an import cut short)
                return report_interrupt()
            raise


if __name__ == "__main__":
    raise SystemExit(main())
