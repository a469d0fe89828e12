"""Integrations — tawin's pieces inside other training frameworks.

``tawin.integrations.trl``: TRL's ``GRPOTrainer`` with tawin's constrained beam rollout, rewards
by item id and TAWin advantages (``pip install 'tawin[trl]'``; docs/trl.md). Nothing here is
imported by the rest of tawin, and importing this package loads no framework.
"""
