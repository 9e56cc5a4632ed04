"""The inputs of the rows a bounded run still holds, kept as the steps' own pieces
(:mod:`ratesim.fast.bounded`).

A row consumer is handed each released row's arrival and its layers' keys. The runner used to
keep them as one ``Arrivals`` (and one list of layers) for exactly the rows in its tables,
joined with each new step and cut after each release: every step copied every row still in
flight, and at the seed's surge (scale 25) about 450,000 rows wait for a Redis connection at
any time, against 216,000 released per step. Here a step's inputs are kept whole, as a piece
starting at its first row of the run, and a release reads its rows from the pieces that hold
them (a view when one piece does); a piece is dropped once every row of it is released. The
work per step is then the rows released, not the rows held.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .chunks import cut_layer, join_layers

if TYPE_CHECKING:
    from ..compile import CompiledLayer
    from ..traffic import Arrivals


class PendingInputs:
    """The arrivals and compiled layers of run rows ``first .. end - 1``, piece by piece."""

    def __init__(self) -> None:
        # (first run row, arrivals, layers), in run order, contiguous
        self._pieces: deque[tuple[int, Arrivals, list[CompiledLayer]]] = deque()
        self.end = 0

    def add(self, arrivals: Arrivals, layers: list[CompiledLayer]) -> None:
        """The next rows of the run (after every row added before)."""
        if len(arrivals):
            self._pieces.append((self.end, arrivals, layers))
            self.end += len(arrivals)

    def take(self, lo: int, hi: int) -> tuple[Arrivals, list[CompiledLayer]]:
        """The inputs of run rows ``lo .. hi - 1`` (held: ``lo < hi <= end``, none dropped)."""
        from ..traffic import Arrivals as _Arrivals

        parts: list[Arrivals] = []
        layer_parts: list[list[CompiledLayer]] = []
        for first, arrivals, layers in self._pieces:
            a, b = max(lo, first) - first, min(hi, first + len(arrivals)) - first
            if a < b:
                parts.append(arrivals.take(slice(a, b)))
                layer_parts.append([cut_layer(cl, a, b) for cl in layers])
        if not parts or sum(len(p) for p in parts) != hi - lo:
            raise AssertionError(f"pending inputs: rows {lo}..{hi - 1} are not all held")
        if len(parts) == 1:
            return parts[0], layer_parts[0]
        return _Arrivals.concat(parts), join_layers(layer_parts)

    def drop(self, before: int) -> None:
        """Forget every piece whose rows all come before run row ``before``."""
        while self._pieces and self._pieces[0][0] + len(self._pieces[0][1]) <= before:
            self._pieces.popleft()

    def __len__(self) -> int:
        """Pieces held."""
        return len(self._pieces)


__all__ = ["PendingInputs"]
