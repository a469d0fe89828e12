"""Stage 1 — steps 1–4 of the data protocol: title rule, time window, k-core, window extension.

The steps and their config fields are listed in :mod:`tawin.data.protocol.prepare`. Everything here works
on masks over the E interactions of a :class:`~tawin.data.formats.raw.RawLog`; nothing is copied or written.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from tawin.data.formats.raw import RawLog
from tawin.data.protocol.prepare_config import PrepareConfig


def k_core_filter(user_E: np.ndarray, item_E: np.ndarray, keep_E: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Iterative k-core on the kept interactions.

    Each round counts the kept interactions of every user and item and drops all interactions of
    users and items with fewer than ``k``; it stops when a round drops nothing. The result is the
    largest sub-log in which every user and item has ≥ k interactions (order of removal does not
    matter). Returns (keep mask bool [E], number of rounds that dropped something).
    """
    keep = keep_E.copy()
    n_users = int(user_E.max()) + 1 if user_E.size else 0
    n_items = int(item_E.max()) + 1 if item_E.size else 0
    rounds = 0
    while True:
        per_user = np.bincount(user_E[keep], minlength=n_users)
        per_item = np.bincount(item_E[keep], minlength=n_items)
        drop = keep & ((per_user[user_E] < k) | (per_item[item_E] < k))
        if not drop.any():
            return keep, rounds
        keep &= ~drop
        rounds += 1


def _month_start(year: int, month: int) -> int:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def _month(text: str) -> tuple[int, int]:
    year, month = text.split("-")
    return int(year), int(month)


def _distinct(codes: np.ndarray, mask: np.ndarray) -> int:
    return int(np.unique(codes[mask]).size)


def choose_window(log: RawLog, titled_E: np.ndarray, config: PrepareConfig) -> tuple[np.ndarray, np.ndarray, int, dict]:
    """Steps 2–4: returns (in-window mask [E], kept mask [E], k-core rounds, window summary)."""
    time = log.time_E
    end = None
    if config.window_end:
        end_year, end_month = _month(config.window_end)
        end = _month_start(end_year, end_month + 1)  # first second after the window_end month
    before_end = titled_E & (time < end) if end is not None else titled_E
    earliest = int(time[before_end].min()) if before_end.any() else None
    start = _month(config.window_start) if config.window_start else None
    attempts = []
    while True:
        start_ts = _month_start(*start) if start else None
        windowed = before_end & (time >= start_ts) if start_ts is not None else before_end
        kept, rounds = k_core_filter(log.user_E, log.item_E, windowed, config.k_core)
        n_items = _distinct(log.item_E, kept)
        attempts.append({"window_start": f"{start[0]:04d}-{start[1]:02d}" if start else None, "items": n_items})
        if n_items >= config.min_items or start_ts is None or earliest is None or start_ts <= earliest:
            break
        start = (start[0] - 1, start[1])
    window = {
        "start": attempts[-1]["window_start"],
        "end": config.window_end,
        "start_unix": start_ts,
        "end_unix_exclusive": end,
        "moved_back_years": len(attempts) - 1,
        "attempts": attempts,
    }
    return windowed, kept, rounds, window


def filter_log(log: RawLog, config: PrepareConfig) -> tuple[np.ndarray, list[dict], dict]:
    """Steps 1–4: returns (kept mask bool [E], what each rule dropped, window summary)."""
    everything = np.ones(log.user_E.size, dtype=bool)
    missing_I = np.array([t is None for t in log.title_I], dtype=bool)
    too_long_I = np.array(
        [t is not None and len(t.split()) > (config.max_title_words or 0) for t in log.title_I], dtype=bool
    )
    if config.max_title_words is None:
        missing_I[:] = too_long_I[:] = False
    titled = ~(missing_I | too_long_I)[log.item_E] if log.item_E.size else everything
    windowed, kept, rounds, window = choose_window(log, titled, config)

    def rule(name: str, before: np.ndarray, after: np.ndarray, **extra) -> dict:
        return dict(
            rule=name,
            interactions_dropped=int(before.sum() - after.sum()),
            users_dropped=_distinct(log.user_E, before) - _distinct(log.user_E, after),
            items_dropped=_distinct(log.item_E, before) - _distinct(log.item_E, after),
            **extra,
        )

    rules = [
        rule(
            "title",
            everything,
            titled,
            max_title_words=config.max_title_words,
            items_without_title=int(missing_I.sum()),
            items_title_too_long=int(too_long_I.sum()),
            items_without_metadata=int((~log.has_metadata_I).sum()),
        ),
        rule("window", titled, windowed),
        rule("k_core", windowed, kept, k=config.k_core, rounds=rounds),
    ]
    return kept, rules, window
