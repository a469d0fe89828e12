"""Experiments — grids of methods × seeds (× anchors σ*) that reproduce the paper's claims.

* :mod:`tawin.experiments.grid` — the experiment YAML schema, validation, and its cells;
* :mod:`tawin.experiments.cli` — ``tawin experiment CONFIG --out DIR``: the command line;
* :mod:`tawin.experiments.run` — one experiment folder: validate, run the unfinished cells, report;
* :mod:`tawin.experiments.worker` — one cell: resolve → train → evaluate → cell.json;
* :mod:`tawin.experiments.pool` — ``--jobs``: cells in worker processes that stop with their parent;
* :mod:`tawin.experiments.results` — cell.json, the cells' paths and results.json;
* :mod:`tawin.experiments.summaries` — summaries of results.json (mean ± std, gains, goal line,
  paired bootstrap, diagnostics, anchor sweep, cost) as the tables of report.md;
* :mod:`tawin.experiments.report` — report.md and the plots.

Nothing is imported here so that ``tawin --help`` stays fast.
"""
