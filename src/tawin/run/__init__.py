"""Orchestration — one command's run from a config to its output folder.

* :mod:`tawin.run.config` — ``PipelineConfig`` (one section per stage) and where datasets live;
* :mod:`tawin.run.folder` — ``RunFolder``: the output folder's lock, saved config and ``--overwrite``;
* :mod:`tawin.run.session` — ``Session``: the loaded dataset, the runtime and the cached encodings;
* :mod:`tawin.run.stages` — one function per stage (sft, rl, eval, popularity), each resumable;
* :mod:`tawin.run.pipeline` — ``tawin run``: the configured stages in order and the results table.

Nothing is imported here so that ``tawin --help`` stays fast.
"""
