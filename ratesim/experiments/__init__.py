"""Experiments: sweeps with replications, and the analyses that turn runs into decisions.

* :func:`sweep` - a scenario over a grid (or samples) of parameter values named by their path
  in the scenario, ``replications`` times with common random numbers, on a local process
  pool, serially or on Dask, with an optional on-disk cache; one tidy row per run.
* :func:`summarize` - per point, mean, standard deviation and Student-t confidence interval
  of every metric over the replications.
* :func:`first_trip`, :func:`isolate_layers`, :func:`degradation_order`, :func:`coupling_map` -
  when each layer trips, which layers mask which, the order in which layers give way as the
  load or a fault grows, and which layer binds over a 2-D grid of thresholds.
* :func:`latin_hypercube` - a space-filling design for ``sweep(samples=...)``.

Plots of every table are in :mod:`ratesim.experiments.plots` (imported on first use). See
``docs/guides/experiments.md``.
"""

from __future__ import annotations

import importlib

from .analysis import coupling_map, degradation_order, first_trip, isolate_layers
from .cache import RunCache
from .designs import grid_points, latin_hypercube
from .metrics import first_trip_metrics, standard_metric_names, standard_metrics
from .paths import ParameterError, apply, resolve
from .stats import summarize
from .sweep import sweep

__all__ = [
    "ParameterError",
    "RunCache",
    "apply",
    "coupling_map",
    "degradation_order",
    "first_trip",
    "first_trip_metrics",
    "grid_points",
    "isolate_layers",
    "latin_hypercube",
    "resolve",
    "standard_metric_names",
    "standard_metrics",
    "summarize",
    "sweep",
]


def __getattr__(name: str) -> object:
    # matplotlib is slow to import: load the plotting module only when it is asked for.
    if name == "plots":
        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module 'ratesim.experiments' has no attribute {name!r}")
