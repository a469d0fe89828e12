"""docs/figures.py still draws the documentation's figures from the library's functions.

It is run into a temporary folder (the committed PNGs are left alone) and must write every figure
the docs and the README show; a renamed or changed library function fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_figures_script_writes_every_figure_the_docs_show(tmp_path):
    subprocess.run([sys.executable, str(REPO / "docs" / "figures.py"), "--out", str(tmp_path)], check=True, capture_output=True)
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    shown = {name for page in pages for name in re.findall(r"figures/(\w+\.png)\)", page.read_text())}
    assert {"tawin_weights.png", "wpauc_window.png"} <= shown
    for name in shown:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"docs/figures.py did not draw {name}"
        assert (REPO / "docs" / "figures" / name).is_file(), f"docs/figures/{name} is not committed"
