"""Run folders never lie and never lose work (issue #16, defects 1–4, 7 and 8), through the CLI.

Every test drives `tawin.cli.main([...])` on a small slice of the shipped data (the full catalogue,
64/16/16 rows) with the tiny model of conftest. Checkpoints are freshly initialised tiny models
(`ckpt_a`, `ckpt_b`: different seeds, hence different weights); the few tests that need a trained
folder run SFT or RL for one or two steps.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tawin.cli import main

from conftest import TINY_OVERRIDES, fails, fake_checkpoint, rewrite, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small(tmp_path_factory, industrial) -> Path:
    from tawin.data.dataset import Dataset
    from tawin.data.formats.canonical import save_dataset

    splits = {name: split.take(np.arange(64 if name == "train" else 16)) for name, split in industrial.splits.items()}
    for split in splits.values():
        object.__setattr__(split, "row", np.arange(len(split), dtype=np.int64))
    return save_dataset(Dataset("small", industrial.items, splits, {}), tmp_path_factory.mktemp("data") / "small")


def tiny_checkpoint(folder: Path, items, seed: int) -> Path:
    from tawin.models.build import ModelConfig, build_recommender, save_recommender

    from conftest import TINY_MODEL

    save_recommender(build_recommender(ModelConfig(**TINY_MODEL), items, seed=seed), folder)
    return folder


@pytest.fixture(scope="module")
def ckpt_a(tmp_path_factory, industrial) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "a", industrial.items, seed=0)


@pytest.fixture(scope="module")
def ckpt_b(tmp_path_factory, industrial) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "b", industrial.items, seed=1)


def evaluation(checkpoint, out: Path, dataset: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        "--dataset",
        str(dataset),
        "--no-progress",
        "--set",
        "threads=1",
        "--set",
        "eval.sample_size=4",
        "--set",
        "eval.num_beams=20",
        "--set",
        "eval.batch_size=4",
        *extra,
    ]


def ok(argv: list[str], capsys) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


# ------------------------------------------------------------------ 1. the folder's identity


def test_eval_refuses_a_folder_made_from_another_checkpoint(small, ckpt_a, tmp_path, capsys):
    out = tmp_path / "eval"
    ok(evaluation("popularity", out, small), capsys)
    before = snapshot(out)
    fails(
        evaluation(ckpt_a, out, small),
        capsys,
        r"holds a eval with a different config \(changed: provenance\.checkpoint: "
        rf"popularity → {ckpt_a} \(sha256 [0-9a-f]{{12}}…\), model\.",
    )
    assert snapshot(out) == before
    ok(evaluation(ckpt_a, out, small, "--overwrite"), capsys)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (
        saved["provenance"]["checkpoint"]["path"] == str(ckpt_a)
        and len(saved["provenance"]["checkpoint"]["sha256"]) == 64
    )
    assert (out / "predictions.jsonl").read_bytes() != before["predictions.jsonl"]
    assert not (out / ".replaced").exists()


def test_eval_resumes_a_copy_of_its_checkpoint_but_not_other_weights(small, ckpt_a, ckpt_b, tmp_path, capsys):
    out = tmp_path / "eval"
    ok(evaluation(ckpt_a, out, small), capsys)
    before = snapshot(out)
    copy = shutil.copytree(ckpt_a, tmp_path / "moved-a")
    ok(evaluation(copy, out, small), capsys)  # same content elsewhere: the same result, resumed
    assert snapshot(out)["metrics.json"] == before["metrics.json"]
    fails(
        evaluation(ckpt_b, out, small),
        capsys,
        rf"changed: provenance\.checkpoint: {copy} \(sha256 \w+…\) → {ckpt_b} \(sha256 \w+…\)",
    )


def test_rl_refuses_a_folder_trained_from_another_init(small, ckpt_a, ckpt_b, tmp_path, capsys):
    def rl(init: Path) -> list[str]:
        return [
            "rl",
            "--init",
            str(init),
            "--out",
            str(tmp_path / "rl"),
            "--dataset",
            str(small),
            "--no-progress",
            "--set",
            "threads=1",
            "--set",
            "rl.max_steps=1",
            "--set",
            "rl.batch_size=2",
            "--set",
            "rl.group_size=4",
            "--set",
            "rl.target_k=1",
            "--set",
            "rl.eval_rows=2",
            "--set",
            "rl.negatives=random",
        ]

    ok(rl(ckpt_a), capsys)
    before = snapshot(tmp_path / "rl")
    fails(
        rl(ckpt_b),
        capsys,
        rf"holds a rl with a different config \(changed: provenance\.init: {ckpt_a} \(sha256 \w+…\) → {ckpt_b}",
    )
    assert snapshot(tmp_path / "rl") == before


def test_a_dataset_changed_in_place_is_refused(small, tmp_path, capsys):
    data = shutil.copytree(small, tmp_path / "data")
    out = tmp_path / "eval"
    ok(evaluation("popularity", out, data), capsys)
    rewrite(data, "test.parquet", target=np.roll(pq.read_table(data / "test.parquet")["target"].to_numpy(), 1))
    fails(
        evaluation("popularity", out, data),
        capsys,
        rf"changed: provenance\.dataset: {data} \(sha256 \w+…\) → {data} \(sha256 \w+…\)",
    )


# ------------------------------------------------------------------ 2. --overwrite never loses the old run first


@pytest.fixture()
def earlier_sft(tmp_path) -> Path:
    folder = tmp_path / "earlier"
    (folder / "best").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"kind": "sft", "seed": 123}))
    (folder / "best" / "model.safetensors").write_bytes(bytes(range(256)))
    (folder / "log.jsonl").write_text('{"step": 1}\n')
    return folder


def test_overwrite_with_a_model_that_does_not_exist_keeps_the_old_run(small, earlier_sft, capsys):
    before = snapshot(earlier_sft)
    fails(
        ["sft", "--out", str(earlier_sft), "--overwrite", "--model", "/not/a/model", "--dataset", str(small)],
        capsys,
        r"model\.name_or_path='/not/a/model' could not be loaded.*no such folder",
    )
    assert snapshot(earlier_sft) == before


def test_overwrite_that_fails_inside_the_folder_puts_the_old_run_back(small, tmp_path, capsys):
    out = tmp_path / "eval"
    ok(evaluation("popularity", out, small), capsys)
    before = snapshot(out)
    unloadable = fake_checkpoint(tmp_path / "unloadable")  # passes the early checks; its weights fail to load
    fails(evaluation(unloadable, out, small, "--overwrite"), capsys, r"unloadable: the checkpoint could not be loaded")
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "config.yaml",
        "metrics.json",
        "predictions.jsonl",
    ]


def test_a_killed_overwrite_is_undone_by_the_next_command(small, tmp_path, capsys):
    out = tmp_path / "eval"
    ok(evaluation("popularity", out, small), capsys)
    before = snapshot(out)
    killed = (
        "import os, sys; from tawin.config import load_config; from tawin.run.config import PipelineConfig; "
        "from tawin.run.folder import RunFolder; "
        "folder = RunFolder(sys.argv[1], load_config(PipelineConfig, "
        "None, ['seed=9']), overwrite=True, kind='eval').__enter__(); "
        "open(os.path.join(sys.argv[1], 'log.jsonl'), 'w').write('{}'); os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", killed, str(out)]).returncode == 9
    assert (out / ".replaced" / "metrics.json").exists() and not (out / "metrics.json").exists()
    ok(evaluation("popularity", out, small), capsys)  # the old run is back, and resumes
    assert snapshot(out) == before and not (out / ".replaced").exists()


# ------------------------------------------------------------------ 3. tawin baseline has a run folder


def test_baseline_follows_the_folder_rules(small, tmp_path, capsys):
    out = tmp_path / "baseline"
    ok(["baseline", "popularity", "--dataset", str(small), "--out", str(out)], capsys)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["kind"] == "baseline" and saved["method"] == "popularity" and saved["sequential"] is None
    assert saved["provenance"]["dataset"]["path"] == str(small)
    before = snapshot(out)
    fails(
        ["baseline", "sasrec", "--dataset", str(small), "--out", str(out)],
        capsys,
        r"holds a baseline with a different config \(changed: method: 'popularity' → 'sasrec', sequential",
    )
    fails(
        ["eval", "--checkpoint", "popularity", "--dataset", str(small), "--out", str(out)],
        capsys,
        r"kind: 'baseline' → 'eval'",
    )
    fails(
        ["baseline", "popularity", "--dataset", str(small), "--out", str(out), "--set", "lr=1"],
        capsys,
        r"popularity has no settings",
    )
    ok(["baseline", "popularity", "--dataset", str(small), "--out", str(out)], capsys)  # finished: resumed, not redone
    assert snapshot(out) == before
    (tmp_path / "file").write_text("keep")
    fails(
        ["baseline", "popularity", "--dataset", str(small), "--out", str(tmp_path / "file")],
        capsys,
        r"is a file, not a folder",
    )
    assert (tmp_path / "file").read_text() == "keep"
    fails(["baseline", "popularity", "--dataset", "", "--out", str(tmp_path / "x")], capsys, r"--dataset is empty")
    assert not (tmp_path / "x").exists()


def test_baseline_refuses_a_folder_in_use(small, tmp_path, capsys):
    from tawin.run.baseline import BaselineRun
    from tawin.run.folder import RunFolder

    out = tmp_path / "busy"
    with RunFolder(out, BaselineRun("popularity", str(small)), kind="baseline"):
        fails(
            ["baseline", "popularity", "--dataset", str(small), "--out", str(out)],
            capsys,
            r"another tawin process is writing",
        )
        assert not (out / "metrics.json").exists()


# ------------------------------------------------------------------ 4. and 8. a finished tawin run, rerun


RUN = [
    "--set",
    "threads=1",
    "--set",
    "stages=sft,eval",
    "--set",
    "sft.epochs=1",
    "--set",
    "sft.batch_size=16",
    "--set",
    "sft.eval_rows=4",
    "--set",
    "sft.log_every=1",
    "--set",
    "sft.warmup_steps=1",
    "--set",
    "eval.sample_size=4",
    "--set",
    "eval.num_beams=20",
    "--set",
    "eval.batch_size=4",
    *[arg for override in TINY_OVERRIDES for arg in ("--set", override)],
]


@pytest.fixture(scope="module")
def finished_run(small, tmp_path_factory) -> tuple[Path, str, dict]:
    """A `tawin run` made under umask 027: its folder, what it printed, and the permissions of everything in it."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("run") / "run"
    mask = os.umask(0o027)
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["run", "--out", str(out), "--dataset", str(small), "--no-progress", *RUN]) == 0
    finally:
        os.umask(mask)
    modes = {str(p.relative_to(out)): (p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in [out, *out.rglob("*")]}
    return out, printed.getvalue(), modes


def test_rerun_of_a_finished_run_keeps_the_recorded_costs(finished_run, small, capsys):
    out, _, _ = finished_run
    first = json.loads((out / "results.json").read_text())
    ok(["run", "--out", str(out), "--dataset", str(small), "--no-progress", *RUN], capsys)
    again = json.loads((out / "results.json").read_text())
    recorded = {r["stage"]: r for r in first["stages"]}
    for stage in ("sft", "eval sft"):
        assert {**recorded[stage], "earlier": True} == next(r for r in again["stages"] if r["stage"] == stage)
    carried = recorded["sft"]["seconds"] + recorded["eval sft"]["seconds"]
    assert again["results"] == first["results"] and again["total_seconds"] >= carried - 0.1  # rounded to 0.1 s
    assert "| sft (earlier run) |" in (out / "results.md").read_text()


def test_outputs_and_checkpoints_follow_the_umask(finished_run):
    _, _, modes = finished_run
    assert {
        "sft/best/model.safetensors",
        "sft/last/trainer.pt",
        "eval/sft/metrics.json",
        "eval/sft/predictions.jsonl",
        "config.yaml",
        "results.json",
    } <= set(modes)
    assert {name: oct(mode) for name, (is_dir, mode) in modes.items() if mode != (0o750 if is_dir else 0o640)} == {}


def test_sft_without_progress_bars_prints_log_lines(finished_run):
    _, printed, _ = finished_run
    assert "sft step 1/4: loss " in printed and "tokens/s" in printed and "ETA" in printed


# ------------------------------------------------------------------ 7. settings that do nothing, or everything


def test_settings_that_cannot_change_a_result_do_not_block_a_resume(small, tmp_path, capsys):
    out = tmp_path / "eval"
    ok(evaluation("popularity", out, small), capsys)
    ok(
        evaluation(
            "popularity", out, small, "--set", "sft.log_every=7", "--set", "rl.save_every=3", "--set", "rl.log_every=2"
        ),
        capsys,
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["sft"]["log_every"] == 7
    fails(
        evaluation("popularity", out, small, "--set", "threads=2"),
        capsys,
        r"changed: threads: 1 → 2 \(the CPU thread count changes the order of float reductions",
    )


def test_eval_and_rl_refuse_model_settings_they_would_ignore(small, ckpt_a, tmp_path, capsys):
    fails(
        evaluation(ckpt_a, tmp_path / "e", small, "--set", "model.hidden_size=64"),
        capsys,
        r"model\.hidden_size=64 \(the checkpoint has 32\): `tawin eval` "
        rf"builds no model; it loads {ckpt_a}, whose tawin\.json fixes",
    )
    fails(
        [
            "rl",
            "--init",
            str(ckpt_a),
            "--out",
            str(tmp_path / "r"),
            "--dataset",
            str(small),
            "--model",
            "Qwen/Qwen2.5-0.5B",
        ],
        capsys,
        r"model\.name_or_path='Qwen/Qwen2\.5-0\.5B' \(the checkpoint has None\): `tawin rl` builds no model",
    )
    fails(
        evaluation("popularity", tmp_path / "e", small, "--set", "model.num_layers=2"),
        capsys,
        r"model\.num_layers: the popularity baseline uses no model; drop these overrides",
    )
    assert not (tmp_path / "e").exists() and not (tmp_path / "r").exists()
    tiny = [
        arg for override in TINY_OVERRIDES for arg in ("--set", override)
    ]  # the checkpoint's own values: consistent, accepted
    ok(
        evaluation(ckpt_a, tmp_path / "e", small, *tiny, "--set", "model.max_prompt_tokens=64"), capsys
    )  # prompt truncation applies
    model = yaml.safe_load((tmp_path / "e" / "config.yaml").read_text())["model"]
    assert model["hidden_size"] == 32 and model["num_layers"] == 2 and model["max_prompt_tokens"] == 64  # what was used


def test_an_empty_dataset_name_is_an_error(tmp_path, capsys):
    fails(
        ["eval", "--checkpoint", "popularity", "--dataset", "", "--out", str(tmp_path / "e")],
        capsys,
        r"data\.dataset is empty",
    )
    assert not (tmp_path / "e").exists()


# ------------------------------------------------------------------ a folder written before a setting existed


def test_a_setting_added_later_at_its_default_resumes_and_other_values_are_refused(small, ckpt_a, tmp_path, capsys):
    """A config.yaml from a version without `sft.label_smoothing` (a stand-in for any field added later)
    resumes when the command sets that field to its default, and is refused with another value."""
    out = tmp_path / "eval"
    ok(evaluation(ckpt_a, out, small), capsys)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["sft"]["label_smoothing"]  # unset in the old folder; the command leaves it at its default
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    ok(evaluation(ckpt_a, out, small), capsys)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["sft"]["label_smoothing"] == 0.0  # the resumed folder records the setting from now on
    del saved["sft"]["label_smoothing"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    fails(
        evaluation(ckpt_a, out, small, "--set", "sft.label_smoothing=0.1"),
        capsys,
        r"different config \(changed: sft\.label_smoothing: \(unset\) → 0\.1\)",
    )


def test_a_baseline_folder_from_before_latest_train_rows_resumes(small, tmp_path, capsys):
    out = tmp_path / "popularity"
    ok(["baseline", "popularity", "--dataset", str(small), "--out", str(out)], capsys)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["latest_train_rows"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    ok(["baseline", "popularity", "--dataset", str(small), "--out", str(out)], capsys)
    fails(
        ["baseline", "popularity", "--dataset", str(small), "--out", str(out), "--latest-train-rows", "8"],
        capsys,
        r"changed: latest_train_rows: 0 → 8",
    )
