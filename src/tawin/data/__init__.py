"""Stage 1 — datasets: the canonical dataset, the layouts it is read from and written to, and the
protocol that turns interactions into splits.

* :mod:`tawin.data.dataset`: the canonical dataset (one item table, one interaction table per
  split); :mod:`tawin.data.sid_collisions`: the catalogue's rule that every item has its own SID.
* :mod:`tawin.data.formats`: the layouts users bring or take away, one reader/writer per layout
  behind one interface (:mod:`tawin.data.formats.registry`): the canonical folder, MiniOneRec's
  ``.inter`` splits and catalogue files, ReRe's and MiniOneRec's CSV splits; and the raw review logs
  (Amazon 2018/2023, a generic CSV) that the protocol starts from.
* :mod:`tawin.data.protocol`: from interactions to splits: the paper's preparation of a raw log
  (filtering, splitting), the train rows RL holds out, seeded row samples, and `tawin data show`.

``formats`` imports neither ``protocol`` nor anything above this stage; ``protocol`` reads and
writes through ``formats``. The names below load on first use. The modules that lived directly in
``tawin/data/`` before this split fail to import with a message naming their new place.
"""

from __future__ import annotations

import importlib.abc
import sys

from tawin.lazy import lazy_exports

_EXPORTS = {
    "Dataset": "dataset",
    "Interactions": "dataset",
    "ItemTable": "dataset",
    "SPLITS": "dataset",
    "load_dataset": "formats.canonical",
    "load_items": "formats.canonical_tables",
    "save_dataset": "formats.canonical",
    "import_dataset": "formats.registry",
    "LAYOUTS": "formats.registry",
    "CSV_SPLITS": "formats.registry",
    "MINIONEREC_INTER": "formats.registry",
    "TAWIN_FOLDER": "formats.registry",
    "Layout": "formats.layout",
    "import_minionerec": "formats.minionerec_inter",
    "import_csv_splits": "formats.csv_import",
    "export_rere_csv": "formats.rere_export",
    "read_source": "formats.raw",
    "PrepareConfig": "protocol.prepare_config",
    "prepare_dataset": "protocol.prepare",
    "dataset_summary": "protocol.summary",
    "holdout_rows": "protocol.holdout",
    "keep_latest_train_rows": "protocol.holdout",
    "sample_rows": "protocol.sampling",
    "make_unique": "sid_collisions",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

MOVED = {
    "tawin.data.io": "tawin.data.formats.canonical",
    "tawin.data.out_folder": "tawin.data.formats.out_folder",
    "tawin.data.importers": "tawin.data.formats.registry (import_dataset, LAYOUTS) and "
    "tawin.data.formats.minionerec_inter (import_minionerec, read_inter)",
    "tawin.data.csv_import": "tawin.data.formats.csv_import",
    "tawin.data.csv_splits": "tawin.data.formats.csv_splits",
    "tawin.data.minionerec_index": "tawin.data.formats.minionerec_index",
    "tawin.data.rere_export": "tawin.data.formats.rere_export",
    "tawin.data.raw": "tawin.data.formats.raw",
    "tawin.data.raw_reader": "tawin.data.formats.raw_reader",
    "tawin.data.prepare": "tawin.data.protocol.prepare",
    "tawin.data.prepare_config": "tawin.data.protocol.prepare_config",
    "tawin.data.filtering": "tawin.data.protocol.filtering",
    "tawin.data.splitting": "tawin.data.protocol.splitting",
    "tawin.data.holdout": "tawin.data.protocol.holdout",
    "tawin.data.sampling": "tawin.data.protocol.sampling",
    "tawin.data.summary": "tawin.data.protocol.summary",
}
"""Modules of ``tawin/data/`` before it was split into ``formats/`` and ``protocol/`` → where they are now."""


class _MovedModules(importlib.abc.MetaPathFinder):
    """Consulted only for modules no other finder found: an old module path fails naming the new one."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            raise ModuleNotFoundError(
                f"{fullname} has moved to {MOVED[fullname]}; import it from there, or import "
                "its public names from tawin.data",
                name=fullname,
            )
        return None


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
