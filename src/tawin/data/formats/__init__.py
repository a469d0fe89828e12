"""Stage 1 — the layouts datasets come in: one reader/writer per layout behind one interface
(:class:`~tawin.data.formats.layout.Layout`, listed in :mod:`tawin.data.formats.registry`), and the
readers of raw review logs that :mod:`tawin.data.protocol` prepares. Nothing here imports the protocol.
"""
