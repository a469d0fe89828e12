"""Experiments — grids of methods × seeds (× anchors σ*) that reproduce the paper's claims.

* :mod:`tawin.experiments.grid` — the experiment YAML schema, validation, and its cells;
* :mod:`tawin.experiments.cli` — ``tawin experiment CONFIG --out DIR``: runs the cells (one SFT
  checkpoint per seed, resumable) and writes results.json;
* :mod:`tawin.experiments.report` — report.md (mean ± std, gains, goal line, paired bootstrap,
  diagnostics, anchor sweep) and the plots.

Nothing is imported here so that ``tawin --help`` stays fast.
"""
