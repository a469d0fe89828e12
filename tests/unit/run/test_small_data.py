"""The small-data variant of the recipe (`small_data`): chosen from the train split's size, applied
where configs load (`tawin run/sft/rl/eval`, experiments) over the YAML file but under `--set`,
checked like any setting, and never a reason to refuse a resume."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import yaml

from tawin.cli import build_parser
from tawin.config import load_config, to_dict
from tawin.errors import ConfigError, UserError
from tawin.experiments.grid import expand_cells
from tawin.experiments.parse import load_experiment, parse_experiment
from tawin.run.commands import load_pipeline_config
from tawin.run.config import PipelineConfig, SmallDataConfig
from tawin.run.folder import RunFolder
from tawin.run.small_data import kept_from_command_line, sized_for_train_rows, small_data_note, train_row_count

INDUSTRIAL_TRAIN_ROWS = 36_259
ENTRIES = ("sft.epochs=10", "model.embedding_dropout=0.2")
SMALL = ["small_data.max_train_rows=10000", f"small_data.overrides=[{', '.join(ENTRIES)}]"]


def with_small(entries=ENTRIES, max_train_rows: int = 10_000, **sections) -> PipelineConfig:
    """A default config whose small-data variant sets `entries` up to `max_train_rows` train rows."""
    config = dataclasses.replace(PipelineConfig(), **sections)
    return dataclasses.replace(config, small_data=SmallDataConfig(max_train_rows, tuple(entries)))


# --- sized_for_train_rows ---------------------------------------------------------------------


@pytest.mark.parametrize("n_train_rows", [1, 5_000, 10_000])
def test_the_variant_applies_up_to_and_at_the_threshold(n_train_rows):
    config = with_small()
    sized, applied = sized_for_train_rows(config, n_train_rows)
    assert applied == ENTRIES
    assert (sized.sft.epochs, sized.model.embedding_dropout) == (10, 0.2)
    # everything else, the small_data section included, as it was
    assert dataclasses.replace(sized, sft=config.sft, model=config.model) == config


@pytest.mark.parametrize(("n_train_rows", "max_train_rows"), [(10_001, 10_000), (0, 10_000), (5_000, 0), (1, 0)])
def test_the_variant_does_not_apply_above_the_threshold_nor_when_off(n_train_rows, max_train_rows):
    config = with_small(max_train_rows=max_train_rows)
    assert sized_for_train_rows(config, n_train_rows) == (config, ())


def test_entries_apply_in_order_the_last_of_one_setting_wins():
    sized, applied = sized_for_train_rows(with_small(["sft.epochs=10", "sft.lr=1e-3", "sft.epochs=12"]), 5_000)
    assert (sized.sft.epochs, sized.sft.lr) == (12, 1e-3)
    assert applied == ("sft.epochs=10", "sft.lr=1e-3", "sft.epochs=12")


def test_applying_to_an_already_sized_config_changes_nothing():
    """The run folder's config.yaml (the effective values and the small_data section) loads back the same."""
    sized, _ = sized_for_train_rows(with_small(), 5_000)
    assert sized_for_train_rows(sized, 5_000)[0] == sized


# An entry skipped because the command line gives its setting: (entry, --set, the value that runs).
GIVEN_WINS = [
    ("sft.epochs=10", "sft.epochs=6", ("sft", "epochs", 6)),
    ("rl.rows.holdout=0.5", "data.rl_holdout=0.25", ("rl", "rows", "holdout", 0.25)),  # --set in the old spelling
    ("data.rl_holdout=0.5", "rl.rows.holdout=0.25", ("rl", "rows", "holdout", 0.25)),  # the entry in the old spelling
    ("sft.epochs=10", "sft={epochs: 6}", ("sft", "epochs", 6)),  # --set of the section that holds it
]


@pytest.mark.filterwarnings("ignore::tawin.overrides.RenamedSetting")  # the old spellings are on purpose
@pytest.mark.parametrize(("entry", "given", "expected"), GIVEN_WINS)
def test_a_setting_given_on_the_command_line_wins_over_its_entry(entry, given, expected):
    *path, value = expected
    config = load_config(PipelineConfig, None, [given])  # what the loader built from --set
    config = dataclasses.replace(config, small_data=SmallDataConfig(10_000, (entry, "model.embedding_dropout=0.2")))
    sized, applied = sized_for_train_rows(config, 5_000, [given])
    assert functools.reduce(getattr, path, sized) == value
    assert sized.model.embedding_dropout == 0.2  # the other entry still applies
    assert applied == ("model.embedding_dropout=0.2",)
    assert kept_from_command_line(config, [given, "rl.lr=1e-5"]) == (given.split("=")[0],)
    assert sized_for_train_rows(sized, 5_000, [given])[0] == sized


def test_a_setting_given_inside_the_section_an_entry_sets_wins_and_the_entry_applies():
    config = load_config(PipelineConfig, None, ["rl.rows.holdout=0.25"])
    config = dataclasses.replace(
        config, small_data=SmallDataConfig(10_000, ("rl.rows={holdout: 0.5, latest_share: 0.5}",))
    )
    sized, applied = sized_for_train_rows(config, 5_000, ["rl.rows.holdout=0.25"])
    assert (sized.rl.rows.holdout, sized.rl.rows.latest_share) == (0.25, 0.5)
    assert applied == config.small_data.overrides
    assert kept_from_command_line(config, ["rl.rows.holdout=0.25"]) == ("rl.rows.holdout",)


def test_an_entry_skipped_for_the_command_line_is_not_checked_against_the_rules():
    """The value that runs is the --set one, so an entry that would break a rule is no error."""
    config = dataclasses.replace(with_small(["rl.anchor=100"]), rl=dataclasses.replace(PipelineConfig().rl, anchor=1))
    assert sized_for_train_rows(config, 5_000, ["rl.anchor=1"]) == (config, ())


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "sft.epoch=10",
            r"entry 'sft\.epoch=10': sft\.epoch is no setting of the run config \(did you mean 'sft\.epochs'",
        ),
        ("sft.epochs=ten", r"entry 'sft\.epochs=ten': sft\.epochs='ten' must be an integer"),
        ("model.embedding_dropout=[1]", r"entry 'model\.embedding_dropout=\[1\]': model\.embedding_dropout=.* number"),
        ("data.latest_train_rows=100", r"entry 'data\.latest_train_rows=100' sets data\.latest_train_rows, which "),
        ("seed=3", r"entry 'seed=3' sets seed, which small_data may not change"),
        ("small_data.max_train_rows=0", r"sets small_data\.max_train_rows, which small_data may not change"),
        ("sft.epochs.x=3", r"sft\.epochs is a single value, not a section"),
        ("sft.epochs", r"entry 'sft\.epochs': override 'sft\.epochs' must look like section\.field=value"),
        ("rl.anchor=100", r"small_data\.overrides \[rl\.anchor=100\]: rl\.anchor=100 lies outside the group"),
    ],
)
def test_a_bad_entry_is_one_error_naming_small_data_overrides_and_the_entry(entry, message):
    with pytest.raises(ConfigError, match=r"invalid small-data variant \(5,000 train rows ≤ .*=10,000\): .*" + message):
        sized_for_train_rows(with_small(["sft.epochs=3", entry]), 5_000)


def test_a_rule_the_main_recipe_already_breaks_is_not_blamed_on_the_entries():
    broken = with_small(["sft.epochs=3"], rl=dataclasses.replace(PipelineConfig().rl, anchor=100))
    sized, _ = sized_for_train_rows(broken, 5_000)
    assert sized.sft.epochs == 3


def test_the_note_is_one_line_with_the_rows_the_threshold_and_the_entries():
    assert small_data_note(5_000, 10_000, ENTRIES) == (
        "tawin: small data: 5,000 train rows ≤ small_data.max_train_rows=10,000, so sft.epochs=10, "
        "model.embedding_dropout=0.2 (set small_data.max_train_rows: 0 to keep the main recipe)"
    )


def test_the_note_lists_only_the_entries_applied_and_names_the_settings_kept_from_set():
    assert small_data_note(5_000, 10_000, ENTRIES[1:], ("sft.epochs",)) == (
        "tawin: small data: 5,000 train rows ≤ small_data.max_train_rows=10,000, so model.embedding_dropout=0.2 "
        "(sft.epochs kept from --set; set small_data.max_train_rows: 0 to keep the main recipe)"
    )
    assert small_data_note(5_000, 10_000, (), ("sft.epochs", "model.embedding_dropout")) == (
        "tawin: small data: 5,000 train rows ≤ small_data.max_train_rows=10,000, so no entry of "
        "small_data.overrides applies (sft.epochs, model.embedding_dropout kept from --set; "
        "set small_data.max_train_rows: 0 to keep the main recipe)"
    )


# --- checked when the config loads ------------------------------------------------------------


def test_every_bad_entry_and_a_negative_threshold_are_reported_in_one_error():
    overrides = [
        "small_data.max_train_rows=-1",
        "small_data.overrides=[sft.epoch=3, seed=2, data.dataset=x, rl.bogus=1]",
    ]
    with pytest.raises(ConfigError) as error:
        load_config(PipelineConfig, None, overrides)
    message = str(error.value)
    assert message.startswith("invalid configuration: small_data.max_train_rows=-1 must be ≥ 0")
    for entry in ("sft.epoch=3", "seed=2", "data.dataset=x", "rl.bogus=1"):
        assert f"small_data.overrides entry '{entry}'" in message


def test_entries_are_checked_even_where_the_variant_would_not_apply():
    """A misspelt entry of a config made for the full data still fails at once, not on the first small run."""
    with pytest.raises(ConfigError, match=r"small_data\.overrides entry 'sft\.epoch=3'"):
        load_config(PipelineConfig, None, ["small_data.overrides=[sft.epoch=3]"])


def test_old_spellings_of_a_setting_are_entries_like_any_other():
    assert SmallDataConfig(10, ("rl.max_rows=8", "eval.max_rows=16")).check() == []


# --- train_row_count ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latest", "rows"), [(0, INDUSTRIAL_TRAIN_ROWS), (5_000, 5_000), (10**6, INDUSTRIAL_TRAIN_ROWS)]
)
def test_train_row_count_of_the_shipped_dataset_after_latest_train_rows(latest, rows):
    config = dataclasses.replace(
        PipelineConfig(), data=dataclasses.replace(PipelineConfig().data, latest_train_rows=latest)
    )
    assert train_row_count(config) == rows


# --- where configs load -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "sft"])
def test_the_command_loader_carries_the_applied_values(command, tmp_path, capsys):
    argv = [command, "--config", "configs/demo.yaml", "--out", str(tmp_path / "out")]
    small = [item for entry in ["data.latest_train_rows=5000", *SMALL] for item in ("--set", entry)]
    config = load_pipeline_config(build_parser().parse_args(argv + small), command)
    assert (config.sft.epochs, config.model.embedding_dropout, config.small_data.overrides) == (10, 0.2, ENTRIES)
    assert capsys.readouterr().err.splitlines() == [small_data_note(5_000, 10_000, ENTRIES)]
    assert not (tmp_path / "out").exists()
    # on every train row (36,259 > 10,000) the demo's recipe stays, silently
    full = load_pipeline_config(build_parser().parse_args(argv + small[2:]), command)
    demo = load_pipeline_config(build_parser().parse_args(argv), command)
    assert (full.sft, full.model) == (demo.sft, demo.model)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["run", "sft"])
def test_the_command_loader_keeps_a_set_value_over_an_entry(command, tmp_path, capsys):
    argv = [command, "--config", "configs/demo.yaml", "--out", str(tmp_path / "out")]
    small = ["data.latest_train_rows=5000", *SMALL, "sft.epochs=6"]
    config = load_pipeline_config(build_parser().parse_args(argv + [x for e in small for x in ("--set", e)]), command)
    assert (config.sft.epochs, config.model.embedding_dropout) == (6, 0.2)
    assert capsys.readouterr().err.splitlines() == [small_data_note(5_000, 10_000, ENTRIES[1:], ("sft.epochs",))]


def test_an_entry_wins_over_the_yaml_file_that_holds_it(tmp_path, capsys):
    """The file's main recipe (sft.epochs: 2, as in configs/demo.yaml) is what the variant replaces."""
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"latest_train_rows": 5000},
                "sft": {"epochs": 2},
                "model": {"embedding_dropout": 0.0},
                "small_data": {"max_train_rows": 10000, "overrides": list(ENTRIES)},
            }
        )
    )
    argv = ["sft", "--config", str(path), "--out", str(tmp_path / "out")]
    config = load_pipeline_config(build_parser().parse_args(argv), "sft")
    assert (config.sft.epochs, config.model.embedding_dropout) == (10, 0.2)
    assert capsys.readouterr().err.splitlines() == [small_data_note(5_000, 10_000, ENTRIES)]


def test_an_experiment_applies_the_variant_to_base_once_and_every_cell_carries_it(tmp_path, capsys):
    data = {
        "name": "small",
        "seeds": [0, 1],
        "base": {
            "data": {"latest_train_rows": 5000},
            "rl": {"lr": 1e-5},
            "small_data": {"max_train_rows": 10000, "overrides": [*ENTRIES, "rl.lr=2e-5"]},
        },
        "methods": {"SFT": None, "TAWin": {"weighting": "tawin", "anchor": 2}, "ReRe": {"lr": 3e-5}},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    experiment = load_experiment(path)
    assert capsys.readouterr().err.count("tawin: small data:") == 1
    assert (experiment.base.sft.epochs, experiment.base.model.embedding_dropout) == (10, 0.2)
    cells = {cell.id: cell.config for cell in expand_cells(experiment)}
    assert len(cells) == 6
    assert {(c.sft.epochs, c.model.embedding_dropout) for c in cells.values()} == {(10, 0.2)}
    assert cells["seed_1/tawin"].rl.lr == 2e-5  # base.rl as the variant left it
    assert cells["seed_1/rere"].rl.lr == 3e-5  # a method's own setting wins over base's
    assert (
        parse_experiment({**data, "base": {**data["base"], "data": {}}}).base.sft.epochs == PipelineConfig().sft.epochs
    )


def test_a_set_on_base_given_to_an_experiment_wins_over_an_entry_and_a_method_over_both(tmp_path, capsys):
    data = {
        "base": {
            "data": {"latest_train_rows": 5000},
            "sft": {"epochs": 2},
            "small_data": {"max_train_rows": 10000, "overrides": [*ENTRIES, "rl.lr=2e-5"]},
        },
        "methods": {"SFT": None, "ReRe": {"lr": 3e-5}},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    experiment = load_experiment(path, ["sft.epochs=6", "rl.lr=4e-5", "seeds=[0]"])
    assert (experiment.base.sft.epochs, experiment.base.model.embedding_dropout) == (6, 0.2)
    assert "so model.embedding_dropout=0.2 (sft.epochs, rl.lr kept from --set;" in capsys.readouterr().err
    cells = {cell.id: cell.config for cell in expand_cells(experiment)}
    assert (cells["seed_0/sft"].rl.lr, cells["seed_0/rere"].rl.lr) == (4e-5, 3e-5)
    assert load_experiment(path).base.sft.epochs == 10  # without --set the entry wins over base's file value


def test_an_experiment_reports_a_bad_entry_with_its_other_problems():
    base = {"data": {"latest_train_rows": 5000}, "small_data": {"max_train_rows": 10000, "overrides": ["sft.epochs=x"]}}
    with pytest.raises(
        ConfigError, match=r"unknown top-level key.*; base: invalid small-data variant .*'sft\.epochs=x'"
    ):
        parse_experiment({"base": base, "methods": {"SFT": None}, "bogus": 1})
    with pytest.raises(ConfigError, match=r"base: small_data\.overrides entry 'seed=1' sets seed"):
        parse_experiment({"base": {"small_data": {"overrides": ["seed=1"]}}, "methods": {"SFT": None}})


# --- resuming -----------------------------------------------------------------------------------


def test_a_folder_resumes_whatever_the_small_data_section_says_when_the_effective_values_match(tmp_path):
    folder = tmp_path / "sft"
    with RunFolder(folder, PipelineConfig(), kind="sft"):  # written before small_data was set
        pass
    with RunFolder(folder, with_small(max_train_rows=100), kind="sft"):  # not applied: same effective config
        pass
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["small_data"] == {"max_train_rows": 100, "overrides": list(ENTRIES)}
    sized, _ = sized_for_train_rows(with_small(), 5_000)
    with pytest.raises(UserError, match=r"changed: .*sft\.epochs: 3 → 10"), RunFolder(folder, sized, kind="sft"):
        pass


def test_a_saved_config_yaml_holds_the_effective_values_and_loads_back_to_them(tmp_path):
    sized, _ = sized_for_train_rows(with_small(), 5_000)
    with RunFolder(tmp_path / "sft", sized, kind="sft"):
        pass
    saved = yaml.safe_load((tmp_path / "sft" / "config.yaml").read_text())
    assert (saved["sft"]["epochs"], saved["model"]["embedding_dropout"]) == (10, 0.2)
    assert to_dict(sized) == {key: value for key, value in saved.items() if key != "kind"}


def test_an_experiment_folder_resumes_after_a_change_to_base_small_data_alone():
    from tawin.run.config_changes import blocking_changes

    before = {"kind": "experiment", "base": {**to_dict(PipelineConfig()), "seed": 0}}
    after = {"kind": "experiment", "base": {**to_dict(with_small(max_train_rows=100)), "seed": 0}}
    assert blocking_changes(before, after, PipelineConfig(), ()) == set()
    after["base"]["sft"]["epochs"] = 10
    assert blocking_changes(before, after, PipelineConfig(), ()) == {"base.sft.epochs"}
