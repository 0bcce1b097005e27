"""Every notebook in notebooks/ runs top to bottom (nbclient, kernel python3), so none can rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_ship():
    names = [p.stem for p in NOTEBOOKS]
    for want in ("quickstart", "multi-device-vs-multi-queue", "validation", "capacity-planning"):
        assert any(want in n for n in names), want


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path):
    nb = nbformat.read(path, as_version=4)
    # Executed in memory from notebooks/ (as a user would); the file on disk stays output-free.
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "every notebook shows at least one plot"
