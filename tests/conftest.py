"""Shared fixtures and helpers of the whole suite (tests/unit/<stage>/, tests/integration/).

Fixtures: the shipped dataset, a small slice of it and a tiny default-architecture model (fast on
CPU). Helpers, imported with ``from conftest import ...`` (``pythonpath = ["tests"]`` in
pyproject.toml): a tiny 4-item dataset and a parquet rewriter to break it, `.inter` and CSV
writers, the CLI failure check, run-folder snapshots, a tiny experiment base, and the Hugging Face
reference beam search with its spread weights.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from tawin.runtime import use_openmp_settings

use_openmp_settings()  # the CLI's OpenMP settings, before torch loads (tawin.runtime does not import it)

import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "tawin" / "resources" / "datasets" / "industrial"
SHARED = REPO.parent / "shared"

TINY_MODEL = dict(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=64)
TINY_OVERRIDES = [f"model.{k}={v}" for k, v in TINY_MODEL.items()]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on a shared 2-core CPU, two threads make the small matmuls of beam search ~30× slower. The
    process-wide count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def industrial():
    from tawin.data.formats.canonical import load_dataset

    return load_dataset(SHIPPED)


@pytest.fixture(scope="session")
def industrial_small(industrial):
    """The shipped catalogue with 256 train / 64 valid / 64 test rows (first rows of each split)."""
    from tawin.data.dataset import Dataset

    splits = {
        name: split.take(np.arange(min(len(split), 256 if name == "train" else 64)))
        for name, split in industrial.splits.items()
    }
    for split in splits.values():
        object.__setattr__(split, "row", np.arange(len(split), dtype=np.int64))
    return Dataset(industrial.name, industrial.items, splits, industrial.meta)


@pytest.fixture()
def tiny_recommender(industrial):
    from tawin.models.build import ModelConfig, build_recommender

    torch.manual_seed(0)
    return build_recommender(ModelConfig(**TINY_MODEL), industrial.items, seed=0)


# ------------------------------------------------------------------ a tiny dataset to break

TINY_SIDS = [("<a_1>", "<b_1>"), ("<a_1>", "<b_2>"), ("<a_2>", "<b_1>"), ("<a_2>", "<b_2>")]


def tiny_model_checkpoint(dataset: Path, folder: Path, seed: int = 0) -> Path:
    """A freshly initialised tiny model (TINY_MODEL) for the catalogue of `dataset`, saved in `folder`."""
    from tawin.data.formats.canonical import load_dataset
    from tawin.models.build import ModelConfig, build_recommender, save_recommender

    save_recommender(build_recommender(ModelConfig(**TINY_MODEL), load_dataset(dataset).items, seed=seed), folder)
    return folder


def tiny_dataset(folder: Path) -> Path:
    """Items 10..13; train rows: [10]→11, [10, 11]→12; valid: [10, 11]→12; test: [10, 11, 12]→13."""
    from tawin.data.dataset import Dataset, Interactions, ItemTable
    from tawin.data.formats.canonical import save_dataset

    items = ItemTable(
        np.array([10, 11, 12, 13], dtype=np.int64),
        ["ten", "eleven", "twelve", "thirteen"],
        [None] * 4,
        [None] * 4,
        list(TINY_SIDS),
    )
    splits = {
        "train": Interactions.from_lists([1, 2], [[10], [10, 11]], [11, 12], [100, 200]),
        "valid": Interactions.from_lists([1], [[10, 11]], [12]),
        "test": Interactions.from_lists([1], [[10, 11, 12]], [13]),
    }
    return save_dataset(Dataset("tiny", items, splits), folder)


def rewrite(folder: Path, file: str, **columns) -> None:
    """Replace (or add) columns of `folder/file`; a value of None drops the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / file
    table = pq.read_table(path)
    for name, values in columns.items():
        if values is None:
            table = table.drop_columns([name])
            continue
        array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    pq.write_table(table, path)


# ------------------------------------------------------------------ raw files to import

INTER_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def write_inter(path: Path, body: str, header: str = INTER_HEADER) -> Path:
    path.write_text(header + body)
    return path


def minionerec_folder(root: Path, train_body: str = "1\t10\t11\n") -> Path:
    """MiniOneRec's .inter layout under root/minionerec: inter/Toy.<split>.inter + index/Toy.{index,item}.json."""
    (root / "minionerec" / "inter").mkdir(parents=True)
    (root / "minionerec" / "index").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        write_inter(
            root / "minionerec" / "inter" / f"Toy.{split}.inter", train_body if split == "train" else "1\t10 11\t12\n"
        )
    (root / "minionerec" / "index" / "Toy.index.json").write_text(
        json.dumps({str(i): list(s) for i, s in zip(range(10, 14), TINY_SIDS)})
    )
    (root / "minionerec" / "index" / "Toy.item.json").write_text(
        json.dumps({str(i): {"title": f"item {i}"} for i in range(10, 14)})
    )
    return root


MINIONEREC_COLUMNS = [
    "user_id",
    "history_item_title",
    "item_title",
    "history_item_id",
    "item_id",
    "history_item_sid",
    "item_sid",
]


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------ the CLI and its run folders


def write_ranked_predictions(path: Path, rows, target_rank: int | None, width: int = 10) -> None:
    """A predictions.jsonl whose every row ranks `width` filler items with the row's target (= the row
    id, as its user) at `target_rank` (None: absent), so per-row Recall@K is known by construction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for row in rows:
        items = [1000 + i for i in range(width)]
        if target_rank is not None:
            items[target_rank] = row
        lines.append(json.dumps({"row": row, "user": row, "target": row, "items": items, "scores": [0.0] * width}))
    path.write_text("\n".join(lines) + "\n")


def fails(argv: list[str], capsys, pattern: str) -> str:
    """Run the CLI; assert exit 2, `pattern` in stderr, no traceback and nothing on stdout."""
    from tawin.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    assert err.startswith("tawin: error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err), err
    assert out == ""
    return err


def fake_checkpoint(folder: Path) -> Path:
    """A folder that passes the early checkpoint check (valid tawin.json, a readable but empty
    model.safetensors) and fails when its weights are loaded, so nothing can train from it."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "tawin.json").write_text('{"model": {}}')
    save_file({}, str(folder / "model.safetensors"))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


TINY_BASE = {
    "threads": 1,
    "model": dict(TINY_MODEL),
    "sft": {
        "epochs": 1,
        "first_train_rows": 128,
        "eval_rows": 8,
        "eval_beams": 10,
        "batch_size": 32,
        "warmup_steps": 2,
    },
    "rl": {"max_steps": 2, "batch_size": 4, "group_size": 8, "eval_rows": 4},
    "eval": {"sample_size": 16, "num_beams": 10, "batch_size": 16, "ks": [1, 3, 5, 10], "diagnostics_rows": 4},
}
"""The `base` of a tiny experiment: the tiny model, a few SFT/RL steps, a short evaluation."""


# ------------------------------------------------------------------ reference beam search

WEIGHT_STD = 0.3
"""Std of the re-drawn weights: logits spread out enough that rankings have no near-ties."""


def spread_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-draw every matrix ~ N(0, WEIGHT_STD²) (norm scales stay 1) and switch to eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * WEIGHT_STD)
    return model.eval()


def hf_beam_search(recommender, ids_BL: torch.Tensor, mask_BL: torch.Tensor, beams: int):
    """HF generate constrained by the same trie: (items [B, K], scores [B, K])."""
    from transformers import GenerationConfig

    trie, codec = recommender.codec.trie, recommender.codec
    width = ids_BL.shape[1]
    config = GenerationConfig(
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=trie.max_depth,
        do_sample=False,
        length_penalty=0.0,
        early_stopping=True,
        pad_token_id=codec.pad_id,
        eos_token_id=codec.eos_id,
        output_scores=True,
        return_dict_in_generate=True,
    )
    with torch.no_grad():
        out = recommender.model.generate(
            input_ids=ids_BL,
            attention_mask=mask_BL,
            generation_config=config,
            prefix_allowed_tokens_fn=lambda batch_id, input_ids: trie.allowed_tokens(input_ids[width:].tolist()),
        )
    items = []
    for tokens in out.sequences[:, width:].tolist():
        end = tokens.index(codec.eos_id) + 1
        items.append(int(trie.leaf_item_T[trie.walk(tokens[:end])]))
    return torch.tensor(items).view(-1, beams), out.sequences_scores.view(-1, beams)


@pytest.fixture()
def encoded(industrial_small, tiny_recommender):
    """The train and valid splits of `industrial_small`, encoded for `tiny_recommender` (RL tests)."""
    from tawin.models.batching import encode_split

    r = tiny_recommender
    return {
        name: encode_split(industrial_small.splits[name], industrial_small.items, r.codec, r.tokenizer, 512)
        for name in ("train", "valid")
    }
