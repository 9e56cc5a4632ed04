"""Every notebook in notebooks/ runs top to bottom in a Jupyter kernel (nbclient), at small size.

Each notebook has one code cell tagged ``parameters`` that sets ``SMALL = False``; the test
inserts ``SMALL = True`` right after it (papermill's convention), so the notebook runs its small
variant: same code, fewer requests. The kernel imports this checkout's ``ratesim`` (PYTHONPATH)
and starts in notebooks/, as a user opening the notebook would. The notebooks are stored with
their outputs stripped, and each opens with the question it answers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Each notebook's small run must stay well inside this (seconds, kernel start included).
SMALL_BUDGET_S = 60


def test_there_are_the_six_notebooks() -> None:
    prefixes = sorted(p.name[:2] for p in NOTEBOOKS)
    assert prefixes == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_stripped_and_opens_with_its_question(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: cell {i} has stored outputs"
            assert cell.get("execution_count") is None, f"{path.name}: cell {i} has a count"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "?" in first.source.split("\n\n")[1], f"{path.name}: no question after the title"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "SMALL = False" in tagged[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom_at_small_size(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    at = next(
        i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])
    )
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("SMALL = True  # injected by the test"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    client = NotebookClient(
        nb,
        timeout=SMALL_BUDGET_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError naming the cell on any error
    elapsed = time.perf_counter() - start
    assert elapsed < SMALL_BUDGET_S, f"{path.name} took {elapsed:.0f} s at small size"
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
