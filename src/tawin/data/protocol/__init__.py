"""Stage 1 — the protocol that turns interactions into splits: the paper's preparation of a raw log
(:mod:`~tawin.data.protocol.prepare`: filtering, then splitting), the latest train rows and the
share RL holds out from SFT (:mod:`~tawin.data.protocol.holdout`), seeded row samples
(:mod:`~tawin.data.protocol.sampling`) and a dataset's summary (`tawin data show`). It reads raw
logs and writes dataset folders through :mod:`tawin.data.formats`.
"""
