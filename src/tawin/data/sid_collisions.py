"""Stage 1 — semantic-ID collisions: give every item a unique code sequence.

Items whose L codes coincide (in practice duplicate listings with the same text) get one more
level, a disambiguation index ``<d_0>, <d_1>, ...`` by item position; when any collision exists
every item gets it (``<d_0>`` when alone) so that all SIDs of a dataset have the same depth.

The rule serves both SID sources: :mod:`tawin.items.sids` applies it to the codes it builds, and
the MiniOneRec readers (:func:`tawin.data.formats.minionerec_index.build_items`) to a dataset's own
SID tokens, which collide for a few duplicate listings. Unique SIDs are a rule of the canonical
catalogue (:func:`tawin.data.formats.canonical_tables.load_items` refuses duplicates), so the rule lives
beside :mod:`tawin.data.dataset`, below both :mod:`tawin.data.formats` and :mod:`tawin.data.protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tawin.errors import DataError

DEFAULT_PREFIXES: tuple[str, ...] = ("a", "b", "c", "d", "e", "f", "g", "h")
"""Token prefix per SID level: level l is written ``<{DEFAULT_PREFIXES[l]}_{code}>``."""


@dataclass(frozen=True)
class CollisionReport:
    """What :func:`resolve_collisions` found before it made every sequence unique."""

    shared_sids: int
    """Distinct code sequences held by two or more items."""
    colliding_items: int
    """Items holding such a shared sequence."""
    largest_group: int
    """Most items sharing one sequence (1 when there is no collision)."""
    added_level: bool
    """Whether the disambiguation level was appended (iff shared_sids > 0)."""


def resolve_collisions(codes_NL: np.ndarray) -> tuple[np.ndarray, CollisionReport]:
    """Make every row unique by appending a disambiguation index when any rows coincide.

    The index of item n is its rank, by position, among the items with the same L codes
    (0 for an item alone), so the result is int64 [N, L+1] when a collision exists and an
    unchanged copy [N, L] otherwise.
    """
    codes_NL = np.asarray(codes_NL, dtype=np.int64)
    n = codes_NL.shape[0]
    if n == 0:
        return codes_NL.copy(), CollisionReport(0, 0, 0, False)
    _, group_N, counts_G = np.unique(codes_NL, axis=0, return_inverse=True, return_counts=True)
    group_N = group_N.reshape(-1)
    shared = counts_G > 1
    report = CollisionReport(int(shared.sum()), int(counts_G[shared].sum()), int(counts_G.max()), bool(shared.any()))
    if not report.added_level:
        return codes_NL.copy(), report
    order_N = np.argsort(group_N, kind="stable")  # items grouped, position order inside a group
    sorted_groups = group_N[order_N]
    rank_sorted = np.arange(n) - np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank_N = np.empty(n, dtype=np.int64)
    rank_N[order_N] = rank_sorted
    return np.concatenate([codes_NL, rank_N[:, None]], axis=1), report


def make_unique(
    sid_tokens: list[tuple[str, ...]], prefix: str | None = None
) -> tuple[list[tuple[str, ...]], CollisionReport]:
    """:func:`resolve_collisions` on token tuples (e.g. a dataset's own MiniOneRec SIDs).

    All tuples must have the same depth L. When any collide, each gets one more token
    ``<{prefix}_{rank}>``; ``prefix`` defaults to the L-th default prefix ("d" after a, b, c).
    """
    depths = {len(s) for s in sid_tokens}
    if len(depths) > 1 or 0 in depths:
        raise DataError(
            f"semantic IDs have depths {sorted(depths)}; every item needs a "
            "non-empty SID of one common depth before collisions can be resolved."
        )
    if not sid_tokens:
        return [], CollisionReport(0, 0, 0, False)
    depth = depths.pop()
    if prefix is None:
        assert depth < len(DEFAULT_PREFIXES), "pass a prefix for SIDs deeper than the default prefixes"
        prefix = DEFAULT_PREFIXES[depth]
    tokens_NL = np.array([list(s) for s in sid_tokens], dtype=object)
    codes_NL = np.stack(
        [np.unique(tokens_NL[:, level].astype(str), return_inverse=True)[1].reshape(-1) for level in range(depth)], 1
    )
    unique_codes, report = resolve_collisions(codes_NL)
    if not report.added_level:
        return [tuple(s) for s in sid_tokens], report
    return [tuple(s) + (f"<{prefix}_{int(r)}>",) for s, r in zip(sid_tokens, unique_codes[:, depth])], report
