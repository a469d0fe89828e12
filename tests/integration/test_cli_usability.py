"""A CLI a newcomer can drive (issue #16): recommend, help texts, --version, config show, log lines
without progress bars, data show before build-sids, unknown Hugging Face models.

Recommendations use a freshly initialised tiny model on the shipped catalogue; nothing trains.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

import tawin
from tawin.cli import build_parser, main

from conftest import SHIPPED, TINY_MODEL, fails, rewrite, tiny_dataset

pytestmark = pytest.mark.usefixtures("one_thread")
HISTORY = [117, 118, 130]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, industrial) -> Path:
    from tawin.models.build import ModelConfig, build_recommender, save_recommender

    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_recommender(build_recommender(ModelConfig(**TINY_MODEL), industrial.items, seed=0), folder)
    return folder


def shown_items(printed: str) -> list[int]:
    return [int(line.split(".", 1)[1].split()[0]) for line in printed.splitlines() if "logp=" in line]


# ------------------------------------------------------------------ recommend


def test_the_ranking_does_not_depend_on_k(checkpoint, industrial, capsys):
    lists = {}
    for k in (3, 10, 50):
        assert (
            main(
                ["recommend", "--checkpoint", str(checkpoint), "--history", ",".join(map(str, HISTORY)), "--k", str(k)]
            )
            == 0
        )
        printed = capsys.readouterr().out
        assert f"top-{k} next items (of 50 beams)" in printed
        lists[k] = shown_items(printed)
    assert len(lists[50]) == 50 and lists[3] == lists[50][:3] and lists[10] == lists[50][:10]
    # They are the 50-beam search that `tawin eval` runs, cut to K.
    from tawin.data.dataset import Interactions
    from tawin.decoding.beam import constrained_beam_search
    from tawin.models.batching import encode_split, prompt_batch
    from tawin.models.build import load_recommender

    model = load_recommender(checkpoint, industrial.items)
    encoded = encode_split(
        Interactions.from_lists([0], [HISTORY], [HISTORY[-1]]), industrial.items, model.codec, model.tokenizer, 512
    )
    ids, mask = prompt_batch(encoded, torch.tensor([0]))
    result = constrained_beam_search(model.model, model.codec.on(torch.device("cpu"))[0], ids, mask, 50)
    assert industrial.items.item_id[result.items_BK[0].numpy()].tolist() == lists[50]


def test_batch_mode_and_the_python_api_agree(checkpoint, industrial, tmp_path, capsys):
    histories = [HISTORY, [5], list(range(100, 114))]  # the last one is cut to its latest 10 items
    source = tmp_path / "histories.jsonl"
    source.write_text(
        json.dumps(histories[0])
        + "\n\n"
        + json.dumps({"user": 7, "history": histories[1]})
        + "\n"
        + json.dumps(histories[2])
        + "\n"
    )
    target = tmp_path / "recs.jsonl"
    assert (
        main(
            ["recommend", "--checkpoint", str(checkpoint), "--input", str(source), "--output", str(target), "--k", "5"]
        )
        == 0
    )
    assert "the top 5 of 50 ranked items for each of 3 histories" in capsys.readouterr().out
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["history"] for line in lines] == histories and lines[1]["user"] == 7

    recommender = tawin.Recommender.from_checkpoint(checkpoint)  # the shipped catalogue by default
    ranked = recommender.recommend(histories, k=5)
    assert [r.items for r in ranked] == [line["items"] for line in lines]
    assert np.allclose([r.scores for r in ranked], [line["scores"] for line in lines], atol=1e-5)
    assert (
        ranked[2].history == histories[2][-10:]
        and ranked[0].titles[0] == industrial.items.title[industrial.items.index_of[ranked[0].items[0]]]
    )
    assert recommender.recommend(histories, k=2)[0].items == ranked[0].items[:2]  # K only cuts


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[117, 999999]\n", r"histories\.jsonl: line 1, field 'history': item\(s\) \[999999\] not in the catalogue"),
        (
            '[117]\n{"history": "117"}\n',
            r"histories\.jsonl: line 2, field 'history' must be a list of integer item ids",
        ),
        ("[117\n", r"histories\.jsonl: line 1 is not JSON"),
    ],
)
def test_batch_mode_bad_lines(text, pattern, checkpoint, tmp_path, capsys):
    (tmp_path / "histories.jsonl").write_text(text)
    fails(
        [
            "recommend",
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(tmp_path / "histories.jsonl"),
            "--output",
            str(tmp_path / "out.jsonl"),
        ],
        capsys,
        pattern,
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_recommend_needs_one_way_in(checkpoint, tmp_path, capsys):
    fails(
        ["recommend", "--checkpoint", str(checkpoint)],
        capsys,
        r"pass either --history ITEMS .* or --input FILE\.jsonl --output FILE\.jsonl",
    )
    fails(
        ["recommend", "--checkpoint", str(checkpoint), "--history", "117", "--input", "x.jsonl"],
        capsys,
        r"pass either --history",
    )


# ------------------------------------------------------------------ help, version, config show


def parsers(parser: argparse.ArgumentParser, name: str = "tawin"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from parsers(sub, f"{name} {command}")


def test_every_argument_has_help_and_every_default_is_shown():
    missing, undocumented = [], []
    for name, parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                undocumented.append(label)
            elif (
                (action.option_strings or action.nargs == "?")
                and not action.required
                and "default" not in formatter._get_help_string(action)
            ):
                missing.append(label)
    assert undocumented == [] and missing == []
    recommend = " ".join(dict(parsers(build_parser()))["tawin recommend"].format_help().split())
    assert (
        "cut from the --beams ranked ones (default: 10)" in recommend
        and "(at most the catalogue size) (default: 50)" in recommend
    )


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"tawin {tawin.__version__}"


def test_config_show_prints_the_resolved_config_with_each_fields_doc(tmp_path, capsys):
    assert main(["config", "show", "sft", "--set", "sft.epochs=5"]) == 0
    printed = capsys.readouterr().out
    assert (
        "sft:  # SFTConfig\n  # Maximum passes over the train split (early stopping may end sooner).\n  epochs: 5\n"
        in printed
    )
    assert "rl:" not in printed
    (tmp_path / "base.yaml").write_text("rl:\n  tau: 0.5\n")
    assert main(["config", "show", "--config", str(tmp_path / "base.yaml"), "--dataset", "industrial"]) == 0
    whole = capsys.readouterr().out
    assert "\n  tau: 0.5\n" in whole and "\nseed: 0\n" in whole
    from tawin.config import load_config
    from tawin.run.config import PipelineConfig

    assert load_config(PipelineConfig, None, [], base=yaml.safe_load(whole)) == load_config(
        PipelineConfig, str(tmp_path / "base.yaml")
    )
    fails(
        ["config", "show", "sfft"],
        capsys,
        r"config show: 'sfft' is not a config section; "
        r"choose one of \['data', 'eval', 'model', 'rl', 'sft', 'small_data'\]",
    )


# ------------------------------------------------------------------ --no-progress, data show, unknown models


def test_evaluation_without_progress_bars_prints_log_lines(checkpoint, tmp_path, capsys, monkeypatch):
    import tawin.eval.evaluate as evaluate
    from tawin.runtime import progress

    monkeypatch.setattr(
        evaluate, "show_progress", functools.partial(progress, every_s=0.0)
    )  # a line per batch instead of every 30 s
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "e"),
                "--no-progress",
                "--set",
                "eval.sample_size=4",
                "--set",
                "eval.batch_size=2",
                "--set",
                "eval.num_beams=20",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "eval: batch 1/2 [" in printed and "eval: batch 2/2 [" in printed and "ETA" in printed


def test_data_show_before_build_sids(tmp_path, capsys):
    data = tiny_dataset(tmp_path / "data")
    rewrite(data, "items.parquet", sid=None)
    rewrite(data, "train.parquet", history=pa.array([list(range(10, 14)) * 3, [10]], pa.list_(pa.int64())))
    assert main(["data", "show", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "tiny: 4 items, no semantic IDs yet (build them with `tawin items build-sids" in printed
    assert "train:      2 rows" in printed and "targets 1970-01-01 → 1970-01-01" in printed
    assert "1 histories were longer than 10 items (up to 12) and are cut to their latest 10" in printed
    assert "valid:      1 rows" in printed and "no target times" in printed
    assert main(["data", "show", str(SHIPPED)]) == 0
    shipped = capsys.readouterr().out
    assert "semantic IDs of " in shipped and "histories were longer" not in shipped


def test_an_unknown_hugging_face_model_fails_at_once(tmp_path, capsys, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants
    from transformers import AutoModelForCausalLM

    started = time.time()
    fails(
        ["sft", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "out")],
        capsys,  # conftest sets HF_HUB_OFFLINE=1
        r"'no-such-org/no-such-model' could not be loaded \(HF_HUB_OFFLINE=1 "
        r"is set.*\): it is not in the local Hugging Face cache",
    )
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    monkeypatch.setattr(
        huggingface_hub,
        "model_info",
        lambda *a, **k: (_ for _ in ()).throw(ConnectionError("Name or service not known")),
    )
    monkeypatch.setattr(
        AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("the loader must not be reached")
    )
    fails(
        ["sft", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "out")],
        capsys,
        r"not in the local Hugging Face cache and the Hub cannot "
        r"be reached \(ConnectionError: Name or service not known\)",
    )
    assert time.time() - started < 20 and not (tmp_path / "out").exists()
