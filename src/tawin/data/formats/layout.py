"""Stage 1 — the one interface of a dataset layout: its reader and its writer.

A :class:`Layout` is one way a dataset lies on disk, with tawin's ``read(folder, …) -> Dataset``
and ``write(dataset, folder, …) -> folder`` for it (None where tawin does not read or write that
layout). :mod:`tawin.data.formats.registry` lists the layouts and picks the one a folder holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tawin.data.dataset import Dataset
from tawin.errors import DataError


class LayoutNotFound(DataError):
    """A reader was given a folder that does not hold its layout.

    `tawin data import` then tries the next layout; `found` names the parts of this one that were
    there (e.g. a train CSV without its test CSV), for the message when no layout matches.
    """

    def __init__(self, message: str, found: list[str] | None = None):
        super().__init__(message)
        self.found = found or []


@dataclass(frozen=True)
class Layout:
    """One on-disk layout of a dataset, with tawin's reader and writer for it."""

    name: str
    """Short name, e.g. ``csv-splits``."""
    described: tuple[str, ...]
    """The layout in words, one entry per variant, as `tawin data import` lists what it accepts."""
    read: Callable[..., Dataset] | None = None
    """``read(folder, …) -> Dataset``: the dataset `folder` holds; raises :class:`LayoutNotFound`
    when `folder` does not hold this layout. None: tawin does not read it."""
    write: Callable[..., Path] | None = None
    """``write(dataset, folder, …) -> folder``: `dataset` written in this layout. None: tawin does
    not write it."""
