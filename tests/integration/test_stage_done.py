"""A stage counts as done only when its output is complete (tawin.run.done): a training stage whose
checkpoint was left half-written is trained again, not handed on to the next stage."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from conftest import TINY_BASE


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "cell_id", "stage", "checkpoint", "announced"),
    [
        ({"SFT only": None}, "sft-only", "sft", "best", "seed_0: SFT →"),
        (
            {"TAWin": {"weighting": "tawin", "target_k": 3, "anchor": 1}},
            "tawin",
            "tawin/rl",
            "final",
            "seed_0: RL TAWin",
        ),
    ],
    ids=["sft", "rl"],
)
def test_an_experiment_retrains_a_stage_whose_checkpoint_is_half_written(
    method, cell_id, stage, checkpoint, announced, tmp_path, capsys, industrial_small
):
    from tawin.cli import main
    from tawin.data.formats.canonical import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {"name": "tiny", "base": {**TINY_BASE, "data": {"dataset": str(data)}}, "seeds": [0], "methods": method}
        )
    )
    out = tmp_path / "out"
    argv = ["experiment", str(config), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    trained, cell = out / "seed_0" / stage, out / "seed_0" / cell_id
    metrics = json.loads((cell / "metrics.json").read_text())

    # summary.json says the stage finished, but its checkpoint lacks the tawin.json every load needs
    # (and there is no last/ to resume from); the cell itself is unfinished.
    (trained / checkpoint / "tawin.json").unlink()
    shutil.rmtree(trained / "last")
    (cell / "metrics.json").unlink()
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    assert announced in capsys.readouterr().out  # retrained, not skipped as done
    assert (trained / checkpoint / "tawin.json").exists()
    assert json.loads((cell / "metrics.json").read_text()) == metrics  # same seed, same checkpoint, same numbers
