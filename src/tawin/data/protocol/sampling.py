"""Stage 1 — subsets of a split's rows: fixed seeded samples, and the unique maximal windows.

Evaluation, the exact diagnostics, validation during SFT and RL, and the experiment grid all draw
their row subsets here, so one seed names the same rows everywhere. SFT's `sft.dedupe_windows`
keeps the train rows that :func:`maximal_windows` selects.
"""

from __future__ import annotations

import numpy as np

from tawin.data.dataset import PAD_ITEM


def sample_rows(n_rows: int, max_rows: int, seed: int) -> np.ndarray:
    """A fixed seeded subset of row indices (sorted), or all rows when max_rows is 0 or ≥ n."""
    if max_rows <= 0 or max_rows >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))


def maximal_windows(
    history_RH: np.ndarray, history_len_R: np.ndarray, target_R: np.ndarray, user_R: np.ndarray
) -> np.ndarray:
    """The rows whose transitions no other row of the same user already holds in its prompt.

    A row's sequence is s = history ⊕ [target]; its transitions are the pairs (s[:k] → s[k]) for
    k = 1..|s|−1. Row a is covered by row b of the same user when s_a is a prefix of b's history:
    trained with a history loss, b's prompt predicts every transition of a. Of rows with one
    sequence and user, the first is kept. The kept rows' transitions are then exactly those of all
    rows, per user (sliding windows over a user's sequence keep only the longest window of each
    start). Rows are told apart by user only, never across users.

    Args:
        history_RH: int64 [R, H] item ids, oldest first, right-padded (entries past the length are ignored).
        history_len_R: int64 [R] history lengths, 1..H.
        target_R: int64 [R] target item ids.
        user_R: int64 [R] user ids.
    Returns:
        int64 [K] sorted indices of the kept rows.
    """
    n_rows, width = history_RH.shape
    column_C = np.arange(width + 1)
    history_RC = np.full((n_rows, width + 1), PAD_ITEM, dtype=np.int64)
    history_RC[:, :width] = np.where(column_C[None, :width] < history_len_R[:, None], history_RH, PAD_ITEM)
    sequence_RC = history_RC.copy()
    sequence_RC[np.arange(n_rows), history_len_R] = target_R
    # Every history prefix h[:k], k = 1..len, as a PAD-padded row: the sequences these rows cover.
    owner_P = np.repeat(np.arange(n_rows), history_len_R)
    length_P = np.arange(len(owner_P)) - np.repeat(np.cumsum(history_len_R) - history_len_R, history_len_R) + 1
    prefix_PC = np.where(column_C[None] < length_P[:, None], history_RC[owner_P], PAD_ITEM)
    keys = np.concatenate([np.column_stack([user_R, sequence_RC]), np.column_stack([user_R[owner_P], prefix_PC])])
    _, key_id = np.unique(keys, axis=0, return_inverse=True)
    key_id = key_id.reshape(-1)
    sequence_id_R, prefix_id_P = key_id[:n_rows], key_id[n_rows:]
    first_R = np.zeros(n_rows, dtype=bool)
    first_R[np.unique(sequence_id_R, return_index=True)[1]] = True
    return np.flatnonzero(first_R & ~np.isin(sequence_id_R, prefix_id_P)).astype(np.int64)
