"""The README's results table equals the committed results it links to.

Each row between ``<!-- compare:start -->`` and ``<!-- compare:end -->`` names its method as a
link to a committed ``report.md``; the ``results.json`` beside that report is summarised with the
report's own code (:func:`tawin.experiments.summaries.summarize`, mean ± sample std over seeds), and
every cell of the row must equal it as printed. The demo table between ``<!-- demo:start -->``
and ``<!-- demo:end -->`` must equal seed 0 of ``benchmarks/results/demo/seeds.json``, the record of
``benchmarks/demo_range.py``.
"""

from __future__ import annotations

import json
import re

from tawin.experiments.summaries import mean_std, summarize

from conftest import REPO

README = REPO / "README.md"
ROW = re.compile(r"^\| \[(?P<label>[^\]]+)\]\((?P<report>[^)]+/report\.md)\) \| (?P<cells>.+) \|$")
LINK_TARGET = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")


def between(text: str, name: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1, f"README needs one {start} … {end} block"
    return text.split(start, 1)[1].split(end, 1)[0]


def table_rows(block: str) -> list[list[str]]:
    lines = [line for line in block.strip().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_readme_results_table_equals_results_json():
    block = between(README.read_text(), "compare")
    header = table_rows(block)[0]
    metrics = [name.replace("Recall", "recall").replace("NDCG", "ndcg") for name in header[1:-1]]
    assert header[0] == "method" and header[-1] == "seeds" and metrics, header
    rows = block.strip().splitlines()[2:]
    assert len(rows) >= 3, "the results table lost its rows"
    summaries: dict = {}
    for line in rows:
        match = ROW.match(line)
        assert match, f"README results row is not `| [method](…/report.md) | … |`: {line}"
        report = REPO / match["report"]
        assert report.is_file(), f"{match['report']} is not committed"
        if report not in summaries:
            summaries[report] = summarize(json.loads((report.parent / "results.json").read_text()))
        summary = summaries[report]
        label = match["label"]
        assert label in summary, f"{label!r} is not a method of {report.parent / 'results.json'}"
        cells = [cell.strip() for cell in match["cells"].split("|")]
        expected = [mean_std(summary[label][metric]) for metric in metrics] + [str(summary[label][metrics[0]][2])]
        assert cells == expected, (
            f"README row {label!r} differs from {report.parent.name}/results.json: {cells} != {expected}"
        )


def test_readme_demo_table_equals_its_record():
    """The README's demo table is seed 0 of benchmarks/demo_range.py's record, as printed (4 decimals)."""
    block = between(README.read_text(), "demo")
    record = json.loads((REPO / "benchmarks" / "results" / "demo" / "seeds.json").read_text())
    recorded = record["seeds"]["0"]["results"]
    readme_rows = table_rows(block)
    columns = readme_rows[0]
    assert record["commit"] in columns[0] and record["date"] in columns[0], (
        "the demo table's heading names the machine, commit and date of its record"
    )
    assert {row[0] for row in readme_rows[2:]} == set(recorded), "the demo table lists every method the demo printed"
    for row in readme_rows[2:]:
        method = row[0]
        for column, value in zip(columns[1:], row[1:]):
            metric = column.replace("Recall", "recall").replace("NDCG", "ndcg")
            assert value == f"{recorded[method][metric]:.4f}", f"README demo {method} {column}: {value}"


def test_make_demo_checks_the_committed_expected_ranges():
    from tawin.run.expected import read_expectation

    assert "--expect benchmarks/results/demo/expected.json" in (REPO / "Makefile").read_text()
    expectation = read_expectation(REPO / "benchmarks" / "results" / "demo" / "expected.json")
    seeds = json.loads((REPO / "benchmarks" / "results" / "demo" / "seeds.json").read_text())["seeds"]
    assert set(expectation.ranges) == set(seeds["0"]["results"])
    for run in seeds.values():  # every recorded seed lies inside the ranges made from them
        for method, metrics in expectation.ranges.items():
            for metric, (low, high) in metrics.items():
                assert low <= run["results"][method][metric] <= high, (method, metric)


def test_readme_links_point_at_committed_files():
    for target in LINK_TARGET.findall(README.read_text()):
        if "://" not in target:
            assert (REPO / target).exists(), f"README links to {target}, which does not exist"
