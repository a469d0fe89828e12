"""The README's results table equals the committed results it links to.

Each row between ``<!-- compare:start -->`` and ``<!-- compare:end -->`` names its method as a
link to a committed ``report.md``; the ``results.json`` beside that report is summarised with the
report's own code (:func:`tawin.experiments.summaries.summarize`, mean ± sample std over seeds), and
every cell of the row must equal it as printed. The demo table between ``<!-- demo:start -->``
and ``<!-- demo:end -->`` must equal ``benchmarks/results/demo.md``, the record of that run.
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
    block = between(README.read_text(), "demo")
    record = table_rows((REPO / "benchmarks" / "results" / "demo.md").read_text().split("## fp32", 1)[0])
    header = record[0]
    recorded = {row[0]: dict(zip(header, row)) for row in record[2:] if len(row) == len(header)}
    readme_rows = table_rows(block)
    columns = readme_rows[0]
    assert "commit" in columns[0] and any(char.isdigit() for char in columns[0]), (
        "the demo table's heading names its machine, commit and date"
    )
    for row in readme_rows[2:]:
        method = row[0]
        assert method in recorded, f"README demo row {method!r} is not in benchmarks/results/demo.md"
        for column, value in zip(columns[1:], row[1:]):
            if column in recorded[method]:
                assert value == recorded[method][column], (
                    f"README demo {method} {column}: {value} != {recorded[method][column]}"
                )


def test_readme_links_point_at_committed_files():
    for target in LINK_TARGET.findall(README.read_text()):
        if "://" not in target:
            assert (REPO / target).exists(), f"README links to {target}, which does not exist"
