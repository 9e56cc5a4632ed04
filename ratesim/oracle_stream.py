"""The oracle and its gap, streamed: a run's rows taken in batches, the same numbers as whole.

:class:`GapStream` folds the oracle gap (``Result.compare_oracle``: ``over_admitted``,
``wrongly_rejected`` and ``peak_excess`` per group) from batches of consecutive rows in arrival
order; :class:`OracleGapConsumer` is a row consumer (the bounded runner's ``RowConsumer``:
``fold(data, layers, first_row)`` then ``finish()``) that runs the oracle on each batch
(:class:`ratesim.oracle.OracleStream`, its limiter state carried across batches) and folds the
gap, giving the DataFrame ``compare_oracle(window_s)`` gives on the whole run.

``peak_excess`` is the largest, over every window ``[s, s + window_us)``, of system minus
oracle admissions in it. Only the rows where the two disagree move a window's sum
(:func:`ratesim.fast.oracle.disagreements`), and a window is complete once a batch reached an
arrival at or after its end: after a batch whose last arrival is at ``C`` (µs; later batches
may still add rows at ``C``), the starts ``s <= C - window_us`` are tried. One compiled pass
per batch does it (:func:`ratesim.fast.oracle.gap_fold`): each disagreement pushed on its
groups' rings, the candidate starts of :func:`ratesim.fast.window_max_sorted` merged with
their cursors kept per group from batch to batch, each start tried once; a ring full is first
freed of the events no later window reads, else doubled. Memory: about the groups' last
windows of disagreements, whatever the run's length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from .fast.oracle import GAP_END_US, gap_finish, gap_fold, new_gap
from .oracle import OracleStream
from .results import gap_frame

if TYPE_CHECKING:
    from .compile import CompiledLayer
    from .results import RunData


class RowConsumer(Protocol):
    """What the bounded runner hands finished rows to (contract item 2): every row once, in
    arrival order, in contiguous batches of any size (empty included)."""

    def fold(self, data: RunData, layers: list[CompiledLayer], first_row: int) -> None: ...

    def finish(self) -> None: ...


class GapStream:
    """The oracle gap folded batch by batch (module docstring); :meth:`finish` gives the
    ``(groups, 3)`` array of :func:`ratesim.fast.oracle_gap` for the whole run.

    One compiled pass per batch (:func:`ratesim.fast.oracle.gap_fold`): the groups' rings of
    their last window's disagreements (``_tt`` times µs, ``_dd`` signs) and cursors (``_p``)
    carried from batch to batch, no per-batch copies or per-group Python loop."""

    def __init__(self, n_layers: int, n_tiers: int, window_us: int) -> None:
        if window_us < 1:
            raise ValueError(f"window_us must be >= 1 µs, got {window_us!r}")
        self.n_layers = n_layers
        self.n_tiers = n_tiers
        self.window_us = int(window_us)
        self._tt, self._dd, self._p = new_gap(n_layers, n_tiers)
        self._out: np.ndarray | None = None

    def fold(
        self,
        time_us: np.ndarray,
        sys_rejected_by: np.ndarray,
        oracle_rejected_by: np.ndarray,
        tier: np.ndarray,
        abusive: np.ndarray,
    ) -> None:
        """The next rows (arrival order): arrival times (µs), the system's and the oracle's
        rejecting layer (-1: admitted), tier codes and abusive flags."""
        if self._out is not None:
            raise ValueError("GapStream.fold after finish")
        if not len(time_us):
            return
        self._tt, self._dd = gap_fold(
            _c(time_us),
            _c(sys_rejected_by),
            _c(oracle_rejected_by),
            _c(tier),
            _c(abusive),
            self.n_layers,
            self.n_tiers,
            self.window_us,
            self._tt,
            self._dd,
            self._p,
        )

    def finish(self) -> np.ndarray:
        """Try every start left; the gap's ``(groups, 3)`` array (over, wrong, peak)."""
        if self._out is None:
            self._out = np.asarray(
                gap_finish(self.window_us, GAP_END_US, self._tt, self._dd, self._p)
            )
        return self._out.copy()


def _c(arr: np.ndarray) -> np.ndarray:
    """``arr`` contiguous (a copy only when it is a strided view), its dtype kept: the
    compiled pass is specialised per dtype, so narrow columns are not widened per batch."""
    return np.ascontiguousarray(arr)


class OracleGapConsumer:
    """A row consumer giving ``Result.compare_oracle(window_s)`` of the run it is fed: the
    oracle run batch by batch on each batch's arrivals and layers, the gap folded.

    ``oracle_sinks``: row consumers that get the oracle's own rows (its RunData per batch, the
    same ``first_row``), e.g. to fold the oracle's aggregates; ``tier_names``: the run's
    (``Arrivals.tier_names``), else the first batch's. :meth:`frame` after :meth:`finish`."""

    def __init__(
        self,
        layer_names: list[str],
        window_s: float = 1.0,
        oracle_sinks: list[RowConsumer] | None = None,
        tier_names: tuple[str, ...] | None = None,
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        self.layer_names = list(layer_names)
        self.window_us = max(1, round(window_s * 1_000_000))
        self.oracle_sinks = list(oracle_sinks or [])
        self._oracle: OracleStream | None = None
        self._gap: GapStream | None = None
        # the frame's tier rows: given, else the first batch's (a run fed no batch has none)
        self._tier_names: tuple[str, ...] | None = tier_names
        self._frame: pd.DataFrame | None = None

    def fold(self, data: RunData, layers: list[CompiledLayer], first_row: int) -> None:
        """The run's rows ``[first_row, first_row + len)``, ``layers`` cut to them."""
        a = data.arrivals
        if self._oracle is None or self._gap is None:
            self._tier_names = a.tier_names if self._tier_names is None else self._tier_names
            self._oracle = OracleStream(layers, len(a.tier_names))
            self._gap = GapStream(len(self.layer_names), len(a.tier_names), self.window_us)
        oracle = self._oracle.step(a, layers)
        self._gap.fold(a.time_us, data.rejected_by, oracle.rejected_by, a.tier, a.abusive)
        for sink in self.oracle_sinks:
            sink.fold(oracle, layers, first_row)

    def finish(self) -> None:
        """The end of the run: the windows left tried, the oracle sinks finished."""
        if self._frame is not None:
            return
        tiers = self._tier_names or ()
        gap = self._gap or GapStream(len(self.layer_names), len(tiers), self.window_us)
        self._frame = gap_frame(gap.finish(), self.layer_names, tiers)
        for sink in self.oracle_sinks:
            sink.finish()

    def frame(self) -> pd.DataFrame:
        """The gap, as ``Result.compare_oracle(window_s)`` (after :meth:`finish`)."""
        if self._frame is None:
            raise ValueError("OracleGapConsumer.frame before finish")
        return self._frame
