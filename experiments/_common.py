"""What every experiment script shares: its command line, and writing tables and figures.

Each script reproduces one notebook's figures (``notebooks/NN-*.ipynb``) at full size, writing
Parquet tables and PNG figures into ``--out``; ``--small`` runs the same code on a small
configuration (the notebook's ``SMALL = True``), which the tests use.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["Outputs", "figure", "parser"]


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """An argument parser with the options every script has: ``--small``, ``--out``, ``--seed``."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--small", action="store_true", help="a small, fast configuration (what the tests run)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/experiments") / name,
        help=f"directory for the Parquet tables and PNG figures (default out/experiments/{name})",
    )
    p.add_argument("--seed", type=int, default=0, help="root seed of the runs (default 0)")
    return p


def figure(
    size: tuple[float, float] = (10.0, 4.5), rows: int = 1, cols: int = 1
) -> tuple[Figure, Any]:
    """A new figure (no pyplot: nothing global, no display needed) and its Axes."""
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(rows, cols)


class Outputs:
    """Writes ``<out>/<name>.parquet`` and ``<out>/<name>.png`` and lists what it wrote."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[Path] = []
        self.started = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)

    def table(self, name: str, df: pd.DataFrame) -> pd.DataFrame:
        """Write ``df`` as Parquet (column names as strings; attrs dropped) and return it."""
        frame = df.copy()
        frame.attrs = {}
        frame.columns = [str(c) for c in frame.columns]
        path = self.out / f"{name}.parquet"
        frame.to_parquet(path)
        self.written.append(path)
        return df

    def png(self, name: str, drawn: Figure | Axes, dpi: int = 110) -> None:
        """Save a figure (or the figure of an Axes) as PNG."""
        fig = drawn if isinstance(drawn, Figure) else drawn.figure
        assert isinstance(fig, Figure), "an Axes of a subfigure: save its figure"
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        self.written.append(path)

    def done(self) -> int:
        took = time.perf_counter() - self.started
        names = ", ".join(p.name for p in self.written)
        print(f"\nwrote {names} to {self.out}/ in {took:.0f} s", file=sys.stderr)
        return 0


def run(main: Callable[[list[str] | None], int]) -> None:
    """``sys.exit(main())``, for the scripts' ``if __name__ == "__main__"``."""
    sys.exit(main(None))
