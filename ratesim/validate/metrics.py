"""The metrics a validation suite adds to the sweep's standard ones (one run's Result -> dict).

* ``fail_open_pct`` / ``fail_closed_pct``: percent of arrivals that some layer decided by its
  failure mode (the store did not answer in time) and let through / rejected;
* ``trips:<layer>``: requests the layer's limit said no to (rejected, shadow-rejected, or
  rejected by its local fallback: :data:`ratesim.experiments.metrics.TRIP_OUTCOMES`), what
  ``never_engages`` checks.

:func:`available` lists every column an assertion may name for a policy's layers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..experiments.metrics import TRIP_OUTCOMES, standard_metric_names
from ..outcomes import FAIL_CLOSED, FAIL_OPEN, OUTCOMES
from ..results import Result

__all__ = ["available", "validate_metrics"]


def validate_metrics(result: Result) -> dict[str, Any]:
    """``fail_open_pct``, ``fail_closed_pct`` and ``trips:<layer>`` of one run (module doc)."""
    req = result.requests
    n = len(req)
    opened = np.zeros(n, dtype=bool)
    closed = np.zeros(n, dtype=bool)
    out: dict[str, Any] = {}
    for name in result.layer_names:
        col = req[f"layer:{name}"]
        opened |= (col == OUTCOMES[FAIL_OPEN]).to_numpy()
        closed |= (col == OUTCOMES[FAIL_CLOSED]).to_numpy()
        out[f"trips:{name}"] = int(col.isin(TRIP_OUTCOMES).to_numpy().sum())
    out["fail_open_pct"] = 100.0 * float(opened.sum()) / n if n else math.nan
    out["fail_closed_pct"] = 100.0 * float(closed.sum()) / n if n else math.nan
    return out


def available(layers: list[str]) -> list[str]:
    """Every metric column a suite's run of a policy with these layers has."""
    return [
        *standard_metric_names(layers),
        *(f"first_trip_s:{name}" for name in layers),
        *(f"trips:{name}" for name in layers),
        "fail_open_pct",
        "fail_closed_pct",
    ]
