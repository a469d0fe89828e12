"""Renamed settings keep working: `data.rl_holdout(_order)`, `rl.latest_share`, `rl.max_rows`,
`rl.sample_seed` (now `rl.rows.*`), `eval.max_rows` (`eval.sample_size`) and `sft.max_train_rows`
(`sft.first_train_rows`) load from YAML, `--set`, experiment files and the config.yaml of folders
written before the rename, each with one warning naming the new spelling; an old and a new spelling
of one setting with different values is an error."""

from __future__ import annotations

import warnings

import pytest
import yaml

from tawin.config import load_config, to_dict
from tawin.errors import ConfigError, UserError
from tawin.experiments.grid import expand_cells
from tawin.experiments.parse import load_experiment, parse_experiment
from tawin.overrides import RenamedSetting
from tawin.rl.config import RLConfig, RLRows
from tawin.run.config import PipelineConfig
from tawin.run.folder import RunFolder

OLD = {
    "data": {"rl_holdout": 0.2, "rl_holdout_order": "random"},
    "rl": {"latest_share": 0.5, "max_rows": 30, "sample_seed": 4},
    "eval": {"max_rows": 16},
    "sft": {"max_train_rows": 128},
}
NEW = {
    "rl": {
        "rows": {"holdout": 0.2, "holdout_order": "random", "latest_share": 0.5, "sample_size": 30, "sample_seed": 4}
    },
    "eval": {"sample_size": 16},
    "sft": {"first_train_rows": 128},
}
RENAMES = {
    "data.rl_holdout": "rl.rows.holdout",
    "data.rl_holdout_order": "rl.rows.holdout_order",
    "rl.latest_share": "rl.rows.latest_share",
    "rl.max_rows": "rl.rows.sample_size",
    "rl.sample_seed": "rl.rows.sample_seed",
    "eval.max_rows": "eval.sample_size",
    "sft.max_train_rows": "sft.first_train_rows",
}


def written(tmp_path, name: str, data: dict):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def old_spelling(tree: dict) -> dict:
    """A resolved pipeline config as tawin wrote it before the rename (config.yaml of an earlier folder)."""
    tree = yaml.safe_load(yaml.safe_dump(tree))
    rows = tree["rl"].pop("rows")
    tree["data"].update(rl_holdout=rows["holdout"], rl_holdout_order=rows["holdout_order"])
    tree["rl"].update(latest_share=rows["latest_share"], max_rows=rows["sample_size"], sample_seed=rows["sample_seed"])
    tree["eval"]["max_rows"] = tree["eval"].pop("sample_size")
    tree["sft"]["max_train_rows"] = tree["sft"].pop("first_train_rows")
    return tree


def test_old_yaml_spellings_load_as_the_new_ones_with_one_warning_each(tmp_path):
    with pytest.warns(RenamedSetting) as caught:
        old = load_config(PipelineConfig, written(tmp_path, "old.yaml", OLD))
    assert old == load_config(PipelineConfig, written(tmp_path, "new.yaml", NEW))
    assert (
        old.rl.rows == RLRows(0.2, "random", 0.5, 30, 4)
        and old.eval.sample_size == 16
        and old.sft.first_train_rows == 128
    )
    assert sorted(str(w.message) for w in caught) == sorted(
        f"{o} is now spelled {n}; the old spelling still works, but write the new one" for o, n in RENAMES.items()
    )


def test_old_set_spellings_override_a_file_in_the_new_spelling(tmp_path):
    overrides = ["data.rl_holdout=0.1", "rl.max_rows=5", "eval.max_rows=3", "sft.max_train_rows=9"]
    with pytest.warns(RenamedSetting) as caught:
        config = load_config(PipelineConfig, written(tmp_path, "new.yaml", NEW), overrides)
    assert "rl.max_rows is now spelled rl.rows.sample_size" in " ".join(str(w.message) for w in caught)
    assert (
        config.rl.rows.holdout,
        config.rl.rows.sample_size,
        config.eval.sample_size,
        config.sft.first_train_rows,
    ) == (0.1, 5, 3, 9)
    assert config.rl.rows.latest_share == 0.5  # the file's other rows settings stay
    # and the other way round: a new --set overrides a file in the old spelling
    with pytest.warns(RenamedSetting):
        assert (
            load_config(
                PipelineConfig, written(tmp_path, "old.yaml", OLD), ["rl.rows.sample_size=7"]
            ).rl.rows.sample_size
            == 7
        )


def test_both_spellings_with_different_values_are_an_error(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"rl\.max_rows=30 and rl\.rows\.sample_size=8 name the same setting .*; "
        r"keep only rl\.rows\.sample_size",
    ):
        load_config(
            PipelineConfig, written(tmp_path, "both.yaml", {"rl": {"max_rows": 30, "rows": {"sample_size": 8}}})
        )
    with (
        pytest.warns(RenamedSetting),
        pytest.raises(
            ConfigError,
            match=r"--set eval\.max_rows=3 and --set eval\.sample_size=4 name "
            r"the same setting",
        ),
    ):
        load_config(PipelineConfig, None, ["eval.max_rows=3", "eval.sample_size=4"])
    with pytest.warns(RenamedSetting):  # the same value twice is no conflict
        assert load_config(PipelineConfig, None, ["eval.max_rows=3", "eval.sample_size=3"]).eval.sample_size == 3


def test_a_folder_written_before_the_rename_resumes_and_still_refuses_a_change(tmp_path):
    config = load_config(PipelineConfig, written(tmp_path, "new.yaml", NEW))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"kind": "run", **old_spelling(to_dict(config))}, sort_keys=False)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a saved config.yaml is read silently
        with RunFolder(folder, config, kind="run"):
            pass
    assert (
        yaml.safe_load((folder / "config.yaml").read_text())["rl"]["rows"]["holdout"] == 0.2
    )  # saved in the new spelling now
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"kind": "run", **old_spelling(to_dict(config))}, sort_keys=False)
    )
    changed = load_config(PipelineConfig, None, ["rl.rows.holdout=0"])
    with (
        pytest.raises(UserError, match=r"changed: .*rl\.rows\.holdout: 0\.2 → 0\.0"),
        RunFolder(folder, changed, kind="run"),
    ):
        pass


EXPERIMENT_OLD = {
    "name": "old",
    "seeds": [0],
    "base": {"data": {"rl_holdout": 0.25}, "rl": {"latest_share": 0.2, "max_rows": 40}, "eval": {"max_rows": 16}},
    "methods": {
        "SFT": None,
        "SFT on every row": {"sft_only": True, "data": {"rl_holdout": 0}},
        "TAWin": {"weighting": "tawin", "anchor": 2},
        "TAWin, every row": {"weighting": "tawin", "anchor": 2, "latest_share": 0, "data": {"rl_holdout": 0}},
    },
    "evals": {"in_sample": {"split": "train", "max_rows": 40}},
}
EXPERIMENT_NEW = {
    "name": "old",
    "seeds": [0],
    "base": {"rl": {"rows": {"holdout": 0.25, "latest_share": 0.2, "sample_size": 40}}, "eval": {"sample_size": 16}},
    "methods": {
        "SFT": None,
        "SFT on every row": {"sft_only": True, "rows": {"holdout": 0}},
        "TAWin": {"weighting": "tawin", "anchor": 2},
        "TAWin, every row": {"weighting": "tawin", "anchor": 2, "rows": {"latest_share": 0, "holdout": 0}},
    },
    "evals": {"in_sample": {"split": "train", "sample_size": 40}},
}


def test_experiment_files_in_the_old_spelling_parse_as_the_new_one():
    with pytest.warns(RenamedSetting) as caught:
        old = parse_experiment(EXPERIMENT_OLD)
    assert "methods[SFT on every row].data.rl_holdout is now spelled methods[SFT on every row].rows.holdout" in [
        str(w.message).split(";")[0] for w in caught
    ]
    assert old == parse_experiment(EXPERIMENT_NEW)
    cells = {cell.name: cell for cell in expand_cells(old)}
    # the SFT folders keep their earlier names, so that earlier experiment folders resume
    assert {name: cell.sft for name, cell in cells.items()} == {
        "sft": "sft",
        "sft-on-every-row": "sft-rl-holdout-0",
        "tawin": "sft",
        "tawin-every-row": "sft-rl-holdout-0",
    }
    assert cells["tawin-every-row"].config.rl.rows == RLRows(holdout=0, latest_share=0, sample_size=40)
    assert cells["sft-on-every-row"].config.rl == RLConfig(rows=RLRows(holdout=0, latest_share=0.2, sample_size=40))
    assert old.evals[0].eval.sample_size == 40


def test_experiment_set_overrides_in_either_spelling_win_over_the_file(tmp_path):
    path = written(tmp_path, "experiment.yaml", EXPERIMENT_NEW)
    with pytest.warns(RenamedSetting, match=r"rl\.max_rows is now spelled rl\.rows\.sample_size"):
        assert load_experiment(path, ["rl.max_rows=8"]).base.rl.rows.sample_size == 8  # the one old spelling read
    with pytest.warns(RenamedSetting):
        assert (
            load_experiment(
                written(tmp_path, "old.yaml", EXPERIMENT_OLD), ["rl.rows.sample_size=9"]
            ).base.rl.rows.sample_size
            == 9
        )


def test_an_experiment_folder_written_before_the_rename_resumes(tmp_path):
    with pytest.warns(RenamedSetting):
        experiment = parse_experiment(EXPERIMENT_OLD)
    saved = yaml.safe_load(yaml.safe_dump({"kind": "experiment", **to_dict(experiment)}, allow_unicode=True))
    # as an earlier tawin wrote it: the pipeline's old names, a method's hold-out in its `data`, its
    # other rows settings flat
    saved["base"] = old_spelling(saved["base"])
    for method in saved["methods"]:
        rows = method["rl"].pop("rows", {})
        method["data"] = {f"rl_{key}": rows.pop(key) for key in ("holdout", "holdout_order") if key in rows}
        method["rl"].update({{"sample_size": "max_rows"}.get(key, key): value for key, value in rows.items()})
    for named in saved["evals"]:
        named["eval"]["max_rows"] = named["eval"].pop("sample_size")
    assert saved["methods"][1]["data"] == {"rl_holdout": 0} and saved["methods"][0]["data"] == {}
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(saved, allow_unicode=True, sort_keys=False))
    with RunFolder(folder, experiment, kind="experiment"):  # no refusal: the same experiment
        pass
    changed = parse_experiment(
        {**EXPERIMENT_NEW, "methods": {**EXPERIMENT_NEW["methods"], "SFT on every row": {"sft_only": True}}}
    )
    (folder / "config.yaml").write_text(yaml.safe_dump(saved, allow_unicode=True, sort_keys=False))
    with pytest.raises(UserError, match=r"changed: methods"), RunFolder(folder, changed, kind="experiment"):
        pass


def test_the_cli_names_each_old_spelling_in_one_line(tmp_path):
    import subprocess
    import sys

    config = written(tmp_path, "old.yaml", {"eval": {"max_rows": 16}})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tawin.cli",
            "config",
            "show",
            "eval",
            "--config",
            str(config),
            "--set",
            "eval.max_rows=8",
            "--set",
            "rl.latest_share=0.2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "  sample_size: 8\n" in result.stdout
    assert result.stderr.splitlines() == [
        "tawin: warning: eval.max_rows is now spelled eval.sample_size; "
        "the old spelling still works, but write the new one",
        "tawin: warning: rl.latest_share is now spelled rl.rows.latest_share; "
        "the old spelling still works, but write the new one",
    ]
