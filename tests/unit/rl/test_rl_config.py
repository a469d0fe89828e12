"""`RLConfig` reads in headed sections: `SECTIONS` names every field once, in field order, the source
shows each heading above its fields, `tawin config show rl` prints them, and the research levers say
so with the tuning.md section that measured them."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from tawin.config import field_docs, render_config
from tawin.rl.config import RLConfig, RLRows
from tawin.run.config import PipelineConfig

from conftest import REPO

RESEARCH_LEVERS = (
    "inject_target",
    "informative_batches",
    "max_draws_per_step",
    "sft_loss_weight",
    "ref_sync_every",
    "ref_sync_alpha",
    "select_best",
    "patience",
)
TUNING = REPO / "benchmarks" / "results" / "tuning.md"


def test_sections_name_every_field_once_in_field_order():
    named = [name for _, names in RLConfig.SECTIONS for name in names]
    assert named == [f.name for f in dataclasses.fields(RLConfig)]
    assert len({heading for heading, _ in RLConfig.SECTIONS}) == len(RLConfig.SECTIONS)


def test_the_source_shows_each_heading_above_its_first_field():
    source = inspect.getsource(RLConfig)
    for heading, names in RLConfig.SECTIONS:
        assert re.search(rf"# --- {re.escape(heading)} -+\n    {names[0]}: ", source), heading


def test_config_show_prints_the_headings_in_order():
    shown = render_config(PipelineConfig(), "rl")
    positions = [shown.index(f"  # --- {heading} ---\n") for heading, _ in RLConfig.SECTIONS]
    assert positions == sorted(positions)
    assert "  rows:  # RLRows\n" in shown and "    sample_size: 0\n" in shown


@pytest.mark.parametrize("name", RESEARCH_LEVERS)
def test_research_levers_say_so_and_point_at_the_tuning_section_that_measured_them(name):
    doc = field_docs(RLConfig)[name]
    assert doc.startswith("Research lever")
    cited = re.search(r'benchmarks/results/tuning\.md, "([^"]+)"', doc)
    assert cited and any(line.startswith("#") and cited.group(1) in line for line in TUNING.read_text().splitlines())


@pytest.mark.parametrize("name", ["lr", "max_steps"])
def test_tuning_results_live_in_tuning_md_not_in_docstrings(name):
    doc = field_docs(RLConfig)[name]
    assert "benchmarks/results/tuning.md" in doc and not re.search(r"\d+ × \d+|best on valid among|\d+%", doc)


def test_every_rows_field_is_documented():
    assert set(field_docs(RLRows)) == {f.name for f in dataclasses.fields(RLRows)}
