"""`tawin sft --set model.item_embedding_init=titles` starts from the title vectors (issue #23, item 2).

A tiny model trains one epoch at a learning rate of 1e-9 (so its weights stay where they started)
on a 40-item slice of the Industrial catalogue with real titles: the checkpoint's code-token rows
are the semantic rows of the random draw of the same seed, every other row is that random draw,
and the resolved config and the checkpoint record the option.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tawin.cli import main
from tawin.data.dataset import Dataset, Interactions, ItemTable
from tawin.data.formats.canonical import save_dataset
from tawin.models import semantic_init
from tawin.models.build import ModelConfig, build_recommender, checkpoint_config, load_recommender
from tawin.models.semantic_init import CACHE_ENV, code_text_vectors, embedding_rows, item_title_vectors

from conftest import TINY_MODEL, TINY_OVERRIDES

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = 3


@pytest.fixture(scope="module")
def items(industrial) -> ItemTable:
    keep, table = slice(0, 40), industrial.items
    return ItemTable(table.item_id[keep], table.title[keep], table.description[keep], table.asin[keep], table.sid[keep])


@pytest.fixture(scope="module")
def dataset(items, tmp_path_factory) -> Path:
    """Users walk the 40 items in order: each row's history is the 3 items before its target."""
    ids = [int(i) for i in items.item_id]
    rows = [(ids[n - 3 : n], ids[n]) for n in range(3, len(ids))]

    def split(part):
        return Interactions.from_lists(list(range(len(part))), [h for h, _ in part], [t for _, t in part])

    splits = {"train": split(rows[:28]), "valid": split(rows[28:33]), "test": split(rows[33:])}
    return save_dataset(Dataset("slice", items, splits), tmp_path_factory.mktemp("data") / "slice")


def test_sft_from_scratch_starts_from_the_title_vectors(items, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    out = tmp_path / "sft"
    overrides = TINY_OVERRIDES + [
        "model.item_embedding_init=titles",
        f"seed={SEED}",
        "threads=1",
        "sft.lr=1e-9",
        "sft.epochs=1",
        "sft.batch_size=8",
        "sft.warmup_steps=0",
        "sft.eval_rows=4",
        "sft.eval_beams=10",
    ]
    assert (
        main(
            [
                "sft",
                "--dataset",
                str(dataset),
                "--out",
                str(out),
                "--no-progress",
                *(arg for override in overrides for arg in ("--set", override)),
            ]
        )
        == 0
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["item_embedding_init"] == "titles"
    assert checkpoint_config(out / "best").item_embedding_init == "titles"

    with monkeypatch.context() as patch:  # loading a checkpoint keeps its weights: nothing is embedded
        refuse = lambda *args: pytest.fail("a loaded checkpoint was re-initialised")  # noqa: E731
        patch.setattr(semantic_init, "item_title_vectors", refuse)
        trained_VH = load_recommender(out / "best", items).model.get_input_embeddings().weight.detach().double()
    random = build_recommender(ModelConfig(**TINY_MODEL), items, seed=SEED)  # the draw the run started from
    random_VH = random.model.get_input_embeddings().weight.detach().double()
    tokens, vectors_TD = code_text_vectors(items.sid, item_title_vectors(items))
    ids = torch.tensor(random.tokenizer.convert_tokens_to_ids(tokens))
    expected_VH = random_VH.clone()
    expected_VH[ids] = torch.from_numpy(embedding_rows(vectors_TD, random_VH[ids].numpy(), seed=SEED))
    assert not torch.allclose(expected_VH[ids], random_VH[ids], atol=1e-3)
    np.testing.assert_allclose(trained_VH.numpy(), expected_VH.numpy(), atol=1e-6)
