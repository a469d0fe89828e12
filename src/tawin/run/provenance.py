"""Orchestration — what a result was made from: the dataset's and the checkpoint's content hashes.

A run folder's identity is its resolved config plus a ``provenance`` block (see
:class:`tawin.run.folder.RunFolder`)::

    provenance:
      dataset:    {path: /abs/dataset, sha256: <items.parquet + the three splits>}
      checkpoint: {path: /abs/RUN/sft/best, sha256: <weights + tawin.json + config and tokenizer files>}  # eval
      init:       {path: ..., sha256: ...}                                                             # rl

The hashes are what the folder compares; the paths are recorded for the reader only, so a moved
or copied checkpoint with the same content still resumes. ``tawin eval --checkpoint popularity``
records ``{path: popularity, sha256: null}``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tawin.checkpoint import hash_file_into
from tawin.data.dataset import SPLITS
from tawin.run.config import dataset_path

CHECKPOINT_FILES = (
    "*.safetensors",
    "tawin.json",
    "config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
)
"""The files of a checkpoint that decide what it predicts (not trainer.pt, best.json or generation_config.json)."""


def content_hash(files: list[Path]) -> str:
    """sha256 over each file's name, size and bytes, in the given order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        hash_file_into(digest, path)
    return digest.hexdigest()


def dataset_provenance(name_or_path: str) -> dict:
    """The dataset folder and the hash of its items and splits."""
    folder = dataset_path(name_or_path)
    files = [folder / "items.parquet", *(folder / f"{split}.parquet" for split in SPLITS)]
    return {"path": str(folder.resolve()), "sha256": content_hash(files)}


def checkpoint_provenance(folder: str | Path) -> dict:
    """A checkpoint folder and the hash of the files that decide its predictions; `popularity` has none."""
    if str(folder) == "popularity":
        return {"path": "popularity", "sha256": None}
    folder = Path(folder)
    files = sorted({path for pattern in CHECKPOINT_FILES for path in folder.glob(pattern) if path.is_file()})
    return {"path": str(folder.resolve()), "sha256": content_hash(files)}


def identity(resolved: dict) -> dict:
    """What a folder compares: `resolved` with the provenance paths left out."""
    if not isinstance(resolved.get("provenance"), dict):
        return resolved
    blocks = {
        name: {k: v for k, v in block.items() if k != "path"} if isinstance(block, dict) else block
        for name, block in resolved["provenance"].items()
    }
    return {**resolved, "provenance": blocks}


def describe(block) -> str:
    """One provenance entry for a message: its path and the start of its hash."""
    if not isinstance(block, dict):
        return "(not recorded)"
    sha = block.get("sha256")
    return f"{block.get('path')} (sha256 {sha[:12]}…)" if sha else str(block.get("path"))
