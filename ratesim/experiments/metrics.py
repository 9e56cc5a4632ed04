"""The numbers a sweep records for each run, named like the time series' columns.

:func:`standard_metrics` reads a :class:`~ratesim.results.Result` (``totals``, ``summary``,
``vs_oracle``, ``requests``, ``timeseries``) and returns one flat dict:

* counts (requests): ``arrivals``, ``admitted``, ``rejected``; per layer ``rejected:<layer>``,
  ``shadow_rejected:<layer>``, ``fail_open:<layer>``, ``fail_closed:<layer>``,
  ``local:<layer>`` (decisions by the local fallback);
* the oracle gap (requests): ``over_admitted`` (admitted, the oracle rejects),
  ``wrongly_rejected`` (rejected, the oracle admits), ``peak_excess`` (largest excess of
  admissions over the oracle's in any 1 s window);
* ``legit_rejected``: requests of legitimate (non-abusive) users that were rejected, and
  ``legit_wrongly_rejected``: those of them the oracle admits;
* shares: ``<count>_pct`` = 100 x count / ``arrivals`` for ``admitted``, ``rejected``, the
  oracle gap and the legitimate rejections (NaN without arrivals);
* times (ms): ``latency_p50_ms``, ``latency_p99_ms``, ``latency_p999_ms`` (decision latency),
  ``pool_wait_p99_ms`` (connection-pool wait, all requests);
* ``redis_queue_peak``: the most commands ever ahead of an arriving command at the Redis.

:func:`first_trip_metrics` adds ``first_trip_s:<layer>``: the first time (s) each layer
rejected, or would have (shadow), NaN if never; the analyses use it.

Extra metrics are callables ``Result -> dict`` of scalars (numbers, strings, booleans); they
run in the worker next to the standard ones and must be picklable (module-level functions) for
the process and Dask runners.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..results import LOCAL_REJECTED, OUTCOMES, REJECTED, SHADOW_REJECTED, Result

__all__ = [
    "MetricFn",
    "TRIP_OUTCOMES",
    "first_trip_metrics",
    "first_trip_times",
    "layer_metric_names",
    "standard_metric_names",
    "standard_metrics",
]

MetricFn = Callable[[Result], Mapping[str, Any]]

#: The outcomes that count as a layer tripping: its limit said no (enforced, shadow, or the
#: local fallback's). Fail-open / fail-closed decisions are the store failing, not the limit.
TRIP_OUTCOMES = tuple(OUTCOMES[c] for c in (REJECTED, SHADOW_REJECTED, LOCAL_REJECTED))

_US_PER_MS = 1000.0
_LAYER_COUNTS = ("rejected", "shadow_rejected", "fail_open", "fail_closed", "local")
_PCT_OF = (
    "admitted",
    "rejected",
    "over_admitted",
    "wrongly_rejected",
    "peak_excess",
    "legit_rejected",
    "legit_wrongly_rejected",
)


def layer_metric_names(layers: list[str]) -> list[str]:
    """The per-layer count columns, in the order :func:`standard_metrics` writes them."""
    return [f"{kind}:{name}" for kind in _LAYER_COUNTS for name in layers]


def standard_metric_names(layers: list[str]) -> list[str]:
    """The keys :func:`standard_metrics` returns for a policy with these layer names, in order
    (so a metric can be checked before any run)."""
    gap = ["over_admitted", "wrongly_rejected", "peak_excess", "legit_rejected"]
    return [
        "arrivals",
        "admitted",
        "rejected",
        *layer_metric_names(layers),
        *gap,
        "legit_wrongly_rejected",
        *(f"{name}_pct" for name in _PCT_OF),
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_p999_ms",
        "pool_wait_p99_ms",
        "redis_queue_peak",
    ]


def _pct(part: float, whole: int) -> float:
    return 100.0 * part / whole if whole else math.nan


def _ms(us: Any) -> float:
    return float(us) / _US_PER_MS


def _gap(result: Result) -> dict[str, int]:
    vs = result.vs_oracle
    total = (vs["group"] == "total").to_numpy()
    legit = ((vs["group"] == "abusive") & (vs["key"] == "false")).to_numpy()

    def pick(column: str, rows: np.ndarray) -> int:
        return int(vs[column].to_numpy()[rows][0])

    return {
        "over_admitted": pick("over_admitted", total),
        "wrongly_rejected": pick("wrongly_rejected", total),
        "peak_excess": pick("peak_excess", total),
        "legit_wrongly_rejected": pick("wrongly_rejected", legit),
    }


def standard_metrics(result: Result) -> dict[str, Any]:
    """The standard metric columns of one run (see the module docstring for each)."""
    totals = result.totals
    n = int(totals["arrivals"])
    row: dict[str, Any] = {
        "arrivals": n,
        "admitted": int(totals["admitted"]),
        "rejected": int(totals["rejected"]),
    }
    summary = result.summary.set_index("layer")
    for kind in _LAYER_COUNTS:
        for name in result.layer_names:
            row[f"{kind}:{name}"] = int(summary[kind].to_numpy()[summary.index.get_loc(name)])
    gap = _gap(result)
    req = result.requests
    legit = ~req["abusive"].to_numpy(dtype=bool)
    gap["legit_rejected"] = int((legit & ~req["admitted"].to_numpy(dtype=bool)).sum())
    gap["legit_wrongly_rejected"] = gap.pop("legit_wrongly_rejected")  # column order
    row.update(gap)
    for name in _PCT_OF:
        row[f"{name}_pct"] = _pct(row[name], n)
    row["latency_p50_ms"] = _ms(totals["latency_p50_us"])
    row["latency_p99_ms"] = _ms(totals["latency_p99_us"])
    row["latency_p999_ms"] = _ms(totals["latency_p999_us"])
    wait = req["pool_wait_us"].to_numpy(dtype=float)
    row["pool_wait_p99_ms"] = _ms(np.percentile(wait, 99)) if len(wait) else math.nan
    if result.scenario.redis is None:
        row["redis_queue_peak"] = 0  # no Redis, no queue (and no need for the time series)
    else:
        depth = result.timeseries["redis_queue_depth"]
        row["redis_queue_peak"] = int(depth.max()) if len(depth) else 0
    return row


def first_trip_times(result: Result) -> dict[str, float]:
    """Per layer, the first arrival time (s) of a request it rejected or would have; NaN if none.

    Requests are in arrival order, so the first tripping row is the earliest.
    """
    req = result.requests
    time_us = req["time_us"].to_numpy()
    out: dict[str, float] = {}
    for name in result.layer_names:
        hit = np.flatnonzero(req[f"layer:{name}"].isin(TRIP_OUTCOMES).to_numpy())
        out[name] = float(time_us[hit[0]]) / 1e6 if len(hit) else math.nan
    return out


def first_trip_metrics(result: Result) -> dict[str, float]:
    """``first_trip_s:<layer>`` for every layer (see :func:`first_trip_times`)."""
    return {f"first_trip_s:{k}": v for k, v in first_trip_times(result).items()}
