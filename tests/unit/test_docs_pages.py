"""The documentation's figures and the tests it cites stay real.

docs/figures.py is run into a temporary folder (the committed PNGs are left alone) and must write
every figure the docs and the README show, so a renamed or changed library function fails here.
Every test the pages name (`tests/….py`, `tests/….py::test_name` or a following `::test_name`)
must exist, so a renamed test cannot leave a page pointing at nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)((?:`?,? ?`?::\w+)*)")


def test_figures_script_writes_every_figure_the_docs_show(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "docs" / "figures.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    shown = {name for page in PAGES for name in re.findall(r"figures/(\w+\.png)\)", page.read_text())}
    assert {"tawin_weights.png", "wpauc_window.png"} <= shown
    for name in shown:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"docs/figures.py did not draw {name}"
        assert (REPO / "docs" / "figures" / name).is_file(), f"docs/figures/{name} is not committed"


def test_every_test_the_pages_cite_exists():
    cited = 0
    for page in PAGES:
        for path, names in TEST_REFERENCE.findall(page.read_text()):
            source = REPO / path
            assert source.is_file(), f"{page.name} cites {path}, which does not exist"
            for name in re.findall(r"::(\w+)", names):
                cited += 1
                assert re.search(rf"^def {name}\(", source.read_text(), flags=re.MULTILINE), (
                    f"{page.name} cites {path}::{name}, which does not exist"
                )
    assert cited >= 10, "the concepts page should cite the tests of each lemma by name"
