"""Bad input on the command line: exit code 2, one paragraph on stderr, no traceback, no output.

Every case runs `main([...])` in-process and checks that nothing was printed on stdout, that
stderr holds the message (and no "Traceback"), and that an output folder is left as it was: a
fresh `--out` is not created and an earlier run folder keeps every file byte for byte. No test
trains: each command fails at validation, and the commands that get past validation name a
checkpoint that does not exist, so even a broken check ends in an error, not in training.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from tawin.config import load_config
from tawin.errors import UserError
from tawin.run.config import PipelineConfig
from tawin.run.folder import RunFolder

from conftest import fails, fake_checkpoint, minionerec_folder, rewrite, snapshot, tiny_dataset

EARLIER_CONFIG = {"kind": "sft", "seed": 123, "data": {"dataset": "somewhere"}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture()
def earlier(tmp_path) -> Path:
    """A fake earlier run folder: its config.yaml and a checkpoint file."""
    folder = tmp_path / "earlier"
    (folder / "sft" / "best").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(EARLIER_CONFIG))
    (folder / "sft" / "best" / "model.safetensors").write_bytes(bytes(range(256)))
    return folder


CONFIG_ERRORS = [
    (["--set", "rl.tua=0.5"], r"rl\.tua: unknown key \(did you mean 'tau'\?\)"),
    (["--set", "sft.epoch=2"], r"sft\.epoch: unknown key \(did you mean 'epochs'\?\)"),
    (["--set", "sft.epochs=three"], r"sft\.epochs='three' must be an integer"),
    (["--set", "rl.tau=fast"], r"rl\.tau='fast' must be a number"),
    (["--set", "eval.ks=[1,2"], r"override 'eval\.ks=\[1,2': the value '\[1,2' is not valid YAML"),
    (
        ["--set", "eval.split=tset"],
        r"eval\.split='tset' is not one of \['train', 'valid', 'test'\] \(did you mean 'test'\?\)",
    ),
    (["--set", "model.name_or_path=[1, 2]"], r"model\.name_or_path=\[1, 2\] must be a string or null"),
    (
        ["--set", "eval.ks=[1,5,60]"],
        r"eval\.ks contains K=60 but eval\.num_beams=50.*raise eval\.num_beams to ≥ 60 or drop K",
    ),
    (
        ["--set", "rl.group_size=16", "--set", "rl.anchor=15"],
        r"rl\.anchor=15 lies outside the group's G−1=15 negatives \(ranks 0\.\.14\); "
        r"lower rl\.anchor/rl\.target_k to ≤ 14 or raise rl\.group_size to ≥ 17",
    ),
    (
        ["--set", "rl.group_size=4", "--set", "rl.target_k=5"],
        r"rl\.anchor=4 \(= target_k − 1 with rl\.target_k=5\) lies outside",
    ),
    (["--set", "rl.tau=0"], r"rl\.tau=0\.0 must be > 0"),
    (["--set", "rl.tau=-1"], r"rl\.tau=-1\.0 must be > 0; use a large tau"),
    (
        ["--set", "sft.epochs=0", "--set", "rl.tau=0", "--set", "eval.batch_size=0"],
        r"sft\.epochs=0 must be ≥ 1; .*rl\.tau=0\.0 must be > 0.*; eval\.batch_size=0 must be ≥ 1",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    CONFIG_ERRORS,
    ids=[
        "unknown-key",
        "unknown-key-2",
        "wrong-type-int",
        "wrong-type-float",
        "bad-yaml",
        "literal",
        "union",
        "k-beyond-beams",
        "anchor",
        "anchor-from-target_k",
        "tau-zero",
        "tau-negative",
        "all-at-once",
    ],
)
def test_config_errors_leave_outputs_alone(overrides, pattern, dataset, earlier, tmp_path, capsys):
    before = snapshot(earlier)
    for out in (earlier, tmp_path / "fresh"):
        fails(
            ["rl", "--dataset", str(dataset), "--init", str(tmp_path / "no-checkpoint"), "--out", str(out), *overrides],
            capsys,
            pattern,
        )
    assert snapshot(earlier) == before
    assert not (tmp_path / "fresh").exists()


def test_k_beyond_beams_through_the_beams_flag(dataset, earlier, capsys):
    before = snapshot(earlier)
    fails(
        ["eval", "--dataset", str(dataset), "--checkpoint", "popularity", "--beams", "5", "--out", str(earlier)],
        capsys,
        r"eval\.ks contains K=20 but eval\.num_beams=5",
    )
    assert snapshot(earlier) == before


def test_unknown_yaml_key_with_suggestion(dataset, earlier, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("rl:\n  tau: 1.0\n  anchr: 2\nevl:\n  num_beams: 20\n")
    before = snapshot(earlier)
    err = fails(
        ["sft", "--config", str(config), "--dataset", str(dataset), "--out", str(earlier)],
        capsys,
        r"invalid configuration in .*config\.yaml and --set "
        r"overrides: rl\.anchr: unknown key \(did you mean 'anchor'\?\)",
    )
    assert "evl: unknown key (did you mean 'eval'?)" in err
    assert snapshot(earlier) == before


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("sft: [1, 2\n", r"config\.yaml: not valid YAML"),
        ("- sft\n- rl\n", r"config\.yaml: the top level must be a mapping of config sections"),
        ("sft: 3\n", r"sft is a section of SFTConfig fields, not a single value \(3\)"),
        ("seed:\n  value: 3\n", r"seed is a single value \(an integer\), not a section"),
    ],
    ids=["syntax", "list", "section-as-value", "value-as-section"],
)
def test_malformed_yaml(text, pattern, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    fails(["sft", "--config", str(config), "--out", str(tmp_path / "out")], capsys, pattern)
    assert not (tmp_path / "out").exists()


def test_missing_config_file(tmp_path, capsys):
    fails(
        ["sft", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")],
        capsys,
        r"nope\.yaml: config file not found",
    )
    assert not (tmp_path / "out").exists()


def test_missing_dataset_folder(earlier, tmp_path, capsys):
    before = snapshot(earlier)
    missing = tmp_path / "no-such-dataset"
    for out in (earlier, tmp_path / "fresh"):
        fails(
            ["sft", "--dataset", str(missing), "--out", str(out)],
            capsys,
            rf"data\.dataset='{re.escape(str(missing))}' is neither "
            r"a shipped dataset \(industrial\) nor an existing folder",
        )
    assert snapshot(earlier) == before
    assert not (tmp_path / "fresh").exists()


def test_broken_dataset_leaves_no_output(dataset, tmp_path, capsys):
    broken = tiny_dataset(tmp_path / "broken")
    rewrite(broken, "train.parquet", target=[11, 99])
    out = tmp_path / "deep" / "fresh"
    fails(
        ["eval", "--dataset", str(broken), "--checkpoint", "popularity", "--out", str(out)],
        capsys,
        r"train\.parquet: row 1, field 'target' refers to item 99, which is not in items\.parquet",
    )
    assert not (tmp_path / "deep").exists()


def test_rule_that_needs_the_dataset_fails_before_training(dataset, tmp_path, capsys):
    out = tmp_path / "fresh"  # the tiny catalogue has 4 items: too few negatives for WPAUC@10
    fails(
        ["run", "--dataset", str(dataset), "--set", "eval.diagnostics=true", "--out", str(out)],
        capsys,
        r"invalid configuration for the dataset tiny: eval\.opauc_group_size=16 must lie in \[2, N=4\].*; "
        r"wpauc@K for K=\[5, 10\] needs at least K negatives but the catalogue has n⁻=3",
    )
    assert not out.exists()


def test_missing_checkpoint(dataset, tmp_path, capsys):
    out = tmp_path / "fresh"
    fails(
        ["eval", "--dataset", str(dataset), "--checkpoint", str(tmp_path / "nonexistent"), "--out", str(out)],
        capsys,
        r"nonexistent: not a tawin checkpoint \(no tawin\.json\)",
    )
    assert not out.exists()


def test_missing_checkpoint_keeps_an_existing_empty_folder(dataset, tmp_path, capsys):
    out = tmp_path / "made-by-user"
    out.mkdir()
    fails(
        ["rl", "--dataset", str(dataset), "--init", str(tmp_path / "nonexistent"), "--out", str(out)],
        capsys,
        r"not a tawin checkpoint",
    )
    assert out.is_dir() and list(out.iterdir()) == []


def test_out_is_a_file(dataset, tmp_path, capsys):
    out = tmp_path / "file.txt"
    out.write_text("keep me")
    fails(
        ["eval", "--dataset", str(dataset), "--checkpoint", "popularity", "--out", str(out)],
        capsys,
        r"file\.txt is a file, not a folder",
    )
    assert out.read_text() == "keep me"


def test_folder_with_a_different_config_is_refused(dataset, earlier, tmp_path, capsys):
    before = snapshot(earlier)
    checkpoint = fake_checkpoint(tmp_path / "checkpoint")  # passes the early checkpoint check
    err = fails(
        ["eval", "--dataset", str(dataset), "--checkpoint", str(checkpoint), "--out", str(earlier)],
        capsys,
        r"earlier holds a sft with a different config \(changed: .*kind: "
        r"'sft' → 'eval'.*\)\. Rerun with the same config to resume, "
        r"choose another --out folder, or pass --overwrite to replace it",
    )
    assert "data.dataset: 'somewhere' → " in err
    assert snapshot(earlier) == before


def test_bad_checkpoint_fails_before_overwrite_touches_the_folder(dataset, earlier, tmp_path, capsys):
    before = snapshot(earlier)
    fails(
        [
            "eval",
            "--dataset",
            str(dataset),
            "--checkpoint",
            str(tmp_path / "nonexistent"),
            "--out",
            str(earlier),
            "--overwrite",
        ],
        capsys,
        r"not a tawin checkpoint",
    )
    assert snapshot(earlier) == before


def pipeline_config(dataset: Path) -> PipelineConfig:
    return load_config(PipelineConfig, None, [f"data.dataset={dataset}"])


def test_run_folder_refuses_then_overwrites(dataset, earlier):
    config = pipeline_config(dataset)
    before = snapshot(earlier)
    with (
        pytest.raises(UserError, match=r"holds a sft with a different config .*pass --overwrite to replace it"),
        RunFolder(earlier, config, kind="sft"),
    ):
        pass
    assert snapshot(earlier) == before
    with RunFolder(earlier, config, overwrite=True, kind="sft"):
        assert not (earlier / "sft").exists()
        saved = yaml.safe_load((earlier / "config.yaml").read_text())
        assert saved["kind"] == "sft" and saved["data"]["dataset"] == str(dataset)
    with RunFolder(earlier, config, kind="sft"):  # the same config resumes
        pass


def test_run_folder_with_unreadable_config(dataset, earlier):
    (earlier / "config.yaml").write_text("a: [")
    with (
        pytest.raises(UserError, match=r"config\.yaml is not a readable tawin config.*--overwrite"),
        RunFolder(earlier, pipeline_config(dataset), kind="sft"),
    ):
        pass


def test_second_run_in_the_same_folder(dataset, tmp_path, capsys):
    out = tmp_path / "busy"
    checkpoint = fake_checkpoint(tmp_path / "checkpoint")  # passes the early checkpoint check
    argv = ["eval", "--dataset", str(dataset), "--checkpoint", str(checkpoint), "--out", str(out)]
    config = load_config(PipelineConfig, None, [f"data.dataset={dataset}"])
    with RunFolder(out, config, kind="eval"):
        before = snapshot(out)
        fails(
            argv,
            capsys,
            r"busy: another tawin process is writing into this folder right now \(it holds .*\.lock\)\. "
            r"Wait for it to finish or choose another --out folder",
        )
        assert snapshot(out) == before


def test_data_show_missing_dataset(tmp_path, capsys):
    fails(["data", "show", str(tmp_path / "nope")], capsys, r"data\.dataset='.*nope' is neither a shipped dataset")


def test_data_import_bad_inter_leaves_no_output(tmp_path, capsys):
    root = minionerec_folder(tmp_path / "src", "1\t10\t11\n2\t10 eleven\t12\n")
    out = tmp_path / "imported"
    fails(
        ["data", "import", str(root), "--out", str(out)],
        capsys,
        r"Toy\.train\.inter: line 3, field 'item_id_list' holds 'eleven', which is not a non-negative integer id",
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("history", "pattern"),
    [
        ("10,abc", r"--history '10,abc' must be item ids separated by commas"),
        ("10,99", r"--history: item\(s\) \[99\] not in the catalogue"),
    ],
)
def test_recommend_bad_history(dataset, tmp_path, history, pattern, capsys):
    fails(
        ["recommend", "--dataset", str(dataset), "--checkpoint", str(tmp_path / "nonexistent"), "--history", history],
        capsys,
        pattern,
    )


# --------------------------------------------------------------- config coercion, without the CLI


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["max_title_words=abc"], r"max_title_words='abc' must be an integer or null"),
        (["max_title_words=2.5"], r"max_title_words=2\.5 must be an integer or null"),
        (
            ["split=temporl"],
            r"split='temporl' is not one of \['temporal', 'leave_one_out'\] \(did you mean 'temporal'\?\)",
        ),
        (["k_core=+-3"], r"k_core='\+-3' must be an integer"),
    ],
    ids=["optional-int-word", "optional-int-float", "literal", "sign-soup"],
)
def test_prepare_config_coercion(overrides, pattern):
    from tawin.data.protocol.prepare import PrepareConfig
    from tawin.errors import ConfigError

    with pytest.raises(ConfigError, match=pattern):
        load_config(PrepareConfig, None, overrides)


def test_optional_int_and_comma_lists_are_read():
    from tawin.data.protocol.prepare import PrepareConfig

    assert load_config(PrepareConfig, None, ["max_title_words=null"]).max_title_words is None
    assert load_config(PrepareConfig, None, ["max_title_words=7"]).max_title_words == 7
    config = load_config(PipelineConfig, None, ["eval.ks=1,5, 10", "eval.num_beams=10", "stages=sft,eval"])
    assert config.eval.ks == (1, 5, 10) and config.stages == ("sft", "eval")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["rl.tau=.nan"], r"rl\.tau=nan must be a number, not NaN"),
        (["sft.epochs"], r"override 'sft\.epochs' must look like section\.field=value"),
        (["seed.value=3"], r"seed is a single value \(an integer\), not a section"),
        (["eval.num_beams=0"], r"eval\.num_beams=0 must be ≥ 1"),
        (["rl.reward=rank", "rl.negatives=random"], r"rl\.reward=rank .* needs rl\.negatives=beam \(got random\)"),
    ],
    ids=["nan", "no-equals", "value-as-section", "zero-beams", "rank-reward"],
)
def test_pipeline_config_errors(overrides, pattern):
    from tawin.errors import ConfigError

    with pytest.raises(ConfigError, match=pattern):
        load_config(PipelineConfig, None, overrides)


def _drop_file(folder: Path) -> None:
    (folder / "valid.parquet").unlink()


DATA_FILE_ERRORS = [
    ("missing file", _drop_file, r"valid\.parquet"),
    ("wrong columns", lambda f: rewrite(f, "train.parquet", target=None), r"train\.parquet: .*'target'"),
    ("non-integer ids", lambda f: rewrite(f, "train.parquet", user=["a", "b"]), r"train\.parquet: .*'user'"),
    (
        "negative ids",
        lambda f: rewrite(f, "train.parquet", target=[11, -3]),
        r"train\.parquet: row 1, field 'target'.*negative",
    ),
    (
        "unknown item",
        lambda f: rewrite(f, "test.parquet", target=[99]),
        r"test\.parquet: row 0, field 'target' refers to item 99",
    ),
    (
        "empty history",
        lambda f: rewrite(f, "valid.parquet", history=pa.array([[]], pa.list_(pa.int64()))),
        r"valid\.parquet: row 0, field 'history' is empty",
    ),
    (
        "duplicate item ids",
        lambda f: rewrite(f, "items.parquet", item_id=[10, 11, 11, 13]),
        r"items\.parquet: .*'item_id' = 11 is duplicated",
    ),
    (
        "item without SIDs",
        lambda f: rewrite(f, "items.parquet", sid=[["<a_1>", "<b_1>"], [], ["<a_1>", "<b_3>"], ["<a_2>", "<b_1>"]]),
        r"items\.parquet: row 1 .*'sid' is empty",
    ),
    (
        "inconsistent SID depth",
        lambda f: rewrite(
            f, "items.parquet", sid=[["<a_1>", "<b_1>"], ["<a_1>"], ["<a_1>", "<b_3>"], ["<a_2>", "<b_1>"]]
        ),
        r"items\.parquet: row 1 .*'sid' has 1 tokens",
    ),
]


@pytest.mark.parametrize(
    ("breakage", "pattern"), [(b, p) for _, b, p in DATA_FILE_ERRORS], ids=[c[0] for c in DATA_FILE_ERRORS]
)
def test_bad_dataset_files_through_the_cli(breakage, pattern, earlier, tmp_path, capsys):
    """Each broken dataset file: exit 2, a message naming file/row/field, the earlier run untouched."""
    broken = tiny_dataset(tmp_path / "broken")
    breakage(broken)
    before = snapshot(earlier)
    fails(
        ["eval", "--dataset", str(broken), "--checkpoint", "popularity", "--out", str(earlier), "--overwrite"],
        capsys,
        pattern,
    )
    assert snapshot(earlier) == before
