"""Shared fixtures: the shipped dataset and a tiny default-architecture model (fast on CPU)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: see tawin.cli.main
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
    from tawin.data.io import load_dataset

    return load_dataset(SHIPPED)


@pytest.fixture(scope="session")
def industrial_small(industrial):
    """The shipped catalogue with 256 train / 64 valid / 64 test rows (first rows of each split)."""
    from tawin.data.dataset import Dataset

    splits = {name: split.take(np.arange(min(len(split), 256 if name == "train" else 64))) for name, split in industrial.splits.items()}
    for split in splits.values():
        object.__setattr__(split, "row", np.arange(len(split), dtype=np.int64))
    return Dataset(industrial.name, industrial.items, splits, industrial.meta)


@pytest.fixture()
def tiny_recommender(industrial):
    from tawin.models.build import ModelConfig, build_recommender

    torch.manual_seed(0)
    return build_recommender(ModelConfig(**TINY_MODEL), industrial.items, seed=0)
