"""Analyses that turn runs into decisions: when each layer trips, which layers mask which, the
order in which layers give way as load (or a fault) grows, and how two thresholds couple.

Each returns a tidy DataFrame and has a plot in :mod:`ratesim.experiments.plots`. A layer
*trips* when its limit says no: a request it rejected, or would have in shadow mode, or its local
fallback rejected (fail-open and fail-closed decisions are the store failing, not the limit).

``seed=None`` with one replication runs the scenario's own seed, as ``simulate(scenario)``
does; otherwise replication ``r`` uses ``SeedSequence(seed or scenario.seed).spawn(R)[r]``, as
:func:`~ratesim.experiments.sweep` does. The runner, cache and progress arguments are those of
``sweep``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..policy import BACKEND_KINDS
from ..results import Result
from ..scenario import Scenario
from .metrics import first_trip_metrics, first_trip_times
from .paths import ParameterError
from .seeds import SeedPlan, direct_seeds, replication_seeds
from .sweep import as_scenario, run_design

__all__ = ["coupling_map", "degradation_order", "first_trip", "isolate_layers"]

#: The binding-layer label of a point where no enforce layer trips.
NONE = "none"


def _plans(scenario: Scenario, seed: int | None, replications: int) -> list[SeedPlan]:
    if seed is None and replications == 1:
        return direct_seeds([scenario.seed])
    return replication_seeds(scenario.seed if seed is None else seed, replications)


def _offered_per_s(time_us: np.ndarray, t_s: float, window_s: float) -> float:
    """Arrivals per second in the window ``(t - window, t]``."""
    hi = np.searchsorted(time_us, round(t_s * 1e6), side="right")
    lo = np.searchsorted(time_us, round((t_s - window_s) * 1e6), side="right")
    return float(hi - lo) / window_s


def first_trip(result: Result, window_s: float | None = None) -> pd.DataFrame:
    """Per layer, when it first tripped and the offered load then, earliest first.

    Columns ``layer``, ``mode``, ``time_s`` (arrival time of the first request it rejected or
    would have; NaN if never) and ``offered_per_s`` (arrivals per second at the gateway over the
    ``window_s`` before, default the scenario's ``interval_s``). Layers that never trip come
    last, in policy order.
    """
    window = result.scenario.interval_s if window_s is None else float(window_s)
    if not window > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    times = first_trip_times(result)
    t_us = result.requests["time_us"].to_numpy()
    modes = {layer.name: layer.mode for layer in result.scenario.policy.layers}
    rows = [
        {
            "layer": name,
            "mode": modes[name],
            "time_s": t,
            "offered_per_s": math.nan if math.isnan(t) else _offered_per_s(t_us, t, window),
        }
        for name, t in times.items()
    ]
    frame = pd.DataFrame(rows, columns=["layer", "mode", "time_s", "offered_per_s"])
    # a stable sort keeps policy order among ties and among the layers that never trip
    return frame.sort_values("time_s", kind="stable", na_position="last").reset_index(drop=True)


def _mode_path(name: str) -> str:
    return f"policy.layers[{name}].mode"


def _isolation_points(scenario: Scenario) -> list[dict[str, Any]]:
    """The stack as it is, then each layer alone: every other layer in shadow mode.

    Concurrency and breaker layers cannot be shadowed (they hold requests), so they stay on.
    """
    layers = scenario.policy.layers
    stack = {_mode_path(layer.name): layer.mode for layer in layers}
    points = [stack]
    for alone in layers:
        points.append(
            {
                _mode_path(layer.name): layer.mode
                if layer is alone or layer.algorithm.kind in BACKEND_KINDS
                else "shadow"
                for layer in layers
            }
        )
    return points


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.median(finite)) if finite else math.nan


def isolate_layers(
    scenario: Scenario | str | os.PathLike[str],
    replications: int = 1,
    seed: int | None = None,
    *,
    engine: str = "auto",
    runner: Any = "local",
    workers: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Each layer alone (every other layer in shadow mode) against the full stack.

    One row per layer: ``layer``, ``mode``, ``first_trip_alone_s`` and ``first_trip_stacked_s``
    (median over replications of the first trip time, NaN if it never trips), ``masked`` (the
    layer trips later in the stack than alone, or only alone, in most replications),
    ``masked_in`` (in how many replications it was masked), ``replications`` and ``delay_s``
    (median of stacked minus alone; ``inf`` when it trips only alone). Runs ``1 + layers``
    configurations per replication, with common random numbers.
    """
    base = as_scenario(scenario)
    points = _isolation_points(base)
    plans = _plans(base, seed, replications)
    df = run_design(
        base,
        points,
        plans,
        metrics=(first_trip_metrics,),
        runner=runner,
        workers=workers,
        cache=cache,
        progress=progress,
        engine=engine,
        desc=f"{base.name} isolate_layers",
    )
    n_rep = len(plans)
    rows = []
    for i, layer in enumerate(base.policy.layers):
        col = f"first_trip_s:{layer.name}"
        stacked = df.loc[df["point"] == 0, col].to_numpy(dtype=float)
        alone = df.loc[df["point"] == i + 1, col].to_numpy(dtype=float)
        delay = np.where(np.isnan(stacked), math.inf, stacked - alone)
        delay = np.where(np.isnan(alone), math.nan, delay)
        masked = ~np.isnan(alone) & (np.isnan(stacked) | (stacked > alone))
        rows.append(
            {
                "layer": layer.name,
                "mode": layer.mode,
                "first_trip_alone_s": _median(list(alone)),
                "first_trip_stacked_s": _median(list(stacked)),
                "masked": bool(masked.sum() * 2 > n_rep),
                "masked_in": int(masked.sum()),
                "replications": n_rep,
                "delay_s": _median(list(delay)),
            }
        )
    return pd.DataFrame(rows)


def _ramp(
    load_factors: Sequence[float] | None, fault_severities: Mapping[str, Sequence[Any]] | None
) -> tuple[str, list[Any]]:
    if (load_factors is None) == (fault_severities is None):
        raise ParameterError("give load_factors=[...] or fault_severities={path: [...]}, not both")
    if load_factors is not None:
        path, values = "traffic.scale", list(load_factors)
    else:
        if not isinstance(fault_severities, Mapping) or len(fault_severities) != 1:
            raise ParameterError(
                "fault_severities must be one {path: [values]}, e.g. "
                "{'redis.service_time.ms': [0.01, 0.02, 0.05]}"
            )
        ((path, raw),) = fault_severities.items()
        values = list(raw)
    if len(values) < 1 or any(not b > a for a, b in zip(values, values[1:], strict=False)):
        raise ParameterError(f"the ramp of {path!r} must be increasing values, got {values!r}")
    return path, values


def _intended_ranks(scenario: Scenario, intended: Sequence[str] | None) -> dict[str, int]:
    names = [layer.name for layer in scenario.policy.layers]
    order = names if intended is None else list(intended)
    unknown = [n for n in order if n not in names]
    if unknown or len(set(order)) != len(order):
        raise ValueError(
            f"intended must name each layer at most once, from {names}; got {list(order)}"
        )
    return {name: rank for rank, name in enumerate(order)}


def _share_profile(df: pd.DataFrame, path: str, scenario: Scenario) -> pd.DataFrame:
    """Per (ramp value, layer): mean share of arrivals it rejected (or would have), with CI."""
    from scipy import stats

    rows = []
    for value, runs in df.groupby("point", sort=True):
        arrivals = runs["arrivals"].to_numpy(dtype=float)
        for layer in scenario.policy.layers:
            hits = runs[f"rejected:{layer.name}"] + runs[f"shadow_rejected:{layer.name}"]
            share = np.divide(
                hits.to_numpy(dtype=float), arrivals, out=np.zeros(len(runs)), where=arrivals > 0
            )
            n = len(share)
            half = (
                stats.t.ppf(0.975, n - 1) * share.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
            )
            rows.append(
                {
                    "point": value,
                    path: runs[path].iat[0],
                    "layer": layer.name,
                    "share_rejected": float(share.mean()),
                    "share_ci95_low": float(share.mean() - half),
                    "share_ci95_high": float(share.mean() + half),
                    "offered_per_s": float(arrivals.mean()) / scenario.duration_s,
                }
            )
    return pd.DataFrame(rows)


def _inversions(engages: dict[str, float], ranks: dict[str, int]) -> dict[str, bool]:
    """A layer is out of order when it and another engaging layer engage in the opposite order
    to the intended one (both of the pair are flagged; ties are not inversions)."""
    out = dict.fromkeys(engages, False)
    ranked = [n for n in engages if n in ranks and not math.isnan(engages[n])]
    for a in ranked:
        for b in ranked:
            if ranks[a] < ranks[b] and engages[a] > engages[b]:
                out[a] = out[b] = True
    return out


def degradation_order(
    scenario: Scenario | str | os.PathLike[str],
    load_factors: Sequence[float] | None = None,
    fault_severities: Mapping[str, Sequence[Any]] | None = None,
    replications: int = 1,
    intended: Sequence[str] | None = None,
    min_share: float = 0.0,
    seed: int | None = None,
    *,
    engine: str = "auto",
    runner: Any = "local",
    workers: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Ramp the offered load (or a fault's severity) and report when each layer gives way.

    ``load_factors`` multiply every traffic rate (``traffic.scale``); ``fault_severities`` is one
    ``{path: [values]}`` (e.g. ``{"redis.service_time.ms": [...]}``). Values must increase. A
    layer *engages* at the first value where the mean share of arrivals it rejects (or would
    have, in shadow mode) exceeds ``min_share`` (a fraction, default 0: any rejection).

    One row per layer, in the order they engage (ties and never-engaging layers in policy
    order): ``layer``, ``mode``, ``engages_at`` (ramp value; NaN if never), ``offered_per_s``
    (mean arrivals per second there), ``share_rejected`` (mean share at the last value),
    ``never_engages``, ``out_of_order`` (it and another layer engage in the opposite order to
    ``intended``, default the policy's order). ``df.attrs["profile"]`` holds the share per ramp
    value and layer (with a 95% interval), ``df.attrs["parameter"]`` the ramp's path.
    """
    base = as_scenario(scenario)
    path, values = _ramp(load_factors, fault_severities)
    ranks = _intended_ranks(base, intended)
    if not 0 <= min_share < 1:
        raise ValueError(f"min_share must be a fraction in [0, 1), got {min_share!r}")
    df = run_design(
        base,
        [{path: v} for v in values],
        _plans(base, seed, replications),
        runner=runner,
        workers=workers,
        cache=cache,
        progress=progress,
        engine=engine,
        desc=f"{base.name} degradation_order",
    )
    profile = _share_profile(df, path, base)
    engages: dict[str, float] = {}
    rows = []
    for layer in base.policy.layers:
        mine = profile[profile["layer"] == layer.name]
        hit = mine[mine["share_rejected"] > min_share]
        first = int(hit["point"].to_numpy()[0]) if len(hit) else None
        engages[layer.name] = math.nan if first is None else float(values[first])
        rows.append(
            {
                "layer": layer.name,
                "mode": layer.mode,
                "engages_at": engages[layer.name],
                "offered_per_s": math.nan
                if first is None
                else float(hit["offered_per_s"].to_numpy()[0]),
                "share_rejected": float(mine["share_rejected"].to_numpy()[-1]),
                "never_engages": not len(hit),
            }
        )
    flags = _inversions(engages, ranks)
    out = pd.DataFrame(rows)
    out["out_of_order"] = [flags[n] for n in out["layer"]]
    out = out.sort_values("engages_at", kind="stable", na_position="last").reset_index(drop=True)
    out.attrs.update(
        profile=profile, parameter=path, intended=sorted(ranks, key=lambda n: ranks[n])
    )
    return out


def _binding(row: pd.Series, enforce: list[str]) -> str:
    """The enforce layer that tripped first in this run (policy order breaks ties)."""
    best, best_t = NONE, math.inf
    for name in enforce:
        t = row[f"first_trip_s:{name}"]
        if not math.isnan(t) and t < best_t:
            best, best_t = name, t
    return best


_GAP_COLUMNS = (
    "over_admitted_pct",
    "wrongly_rejected_pct",
    "legit_rejected_pct",
    "legit_wrongly_rejected_pct",
)


def coupling_map(
    scenario: Scenario | str | os.PathLike[str],
    x: str,
    y: str,
    x_values: Sequence[Any],
    y_values: Sequence[Any],
    replications: int = 1,
    seed: int | None = None,
    *,
    engine: str = "auto",
    runner: Any = "local",
    workers: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Over the grid ``x`` x ``y`` (two parameter paths), which layer binds first and the gap.

    One row per grid point: the two parameters, ``binding_layer`` (the enforce layer that trips
    first in most replications, ``"none"`` if none trips), ``binding_share`` (the share of
    replications where it did), the means of ``over_admitted_pct``, ``wrongly_rejected_pct``,
    ``legit_rejected_pct`` and ``legit_wrongly_rejected_pct`` (percent of arrivals),
    ``never_engages`` (the layers that trip in no replication there, comma-separated) and one
    boolean ``never:<layer>`` per layer.
    """
    base = as_scenario(scenario)
    if x == y:
        raise ParameterError(f"x and y must be two different paths, got {x!r} twice")
    df = run_design(
        base,
        [{x: a, y: b} for a in x_values for b in y_values],
        _plans(base, seed, replications),
        metrics=(first_trip_metrics,),
        runner=runner,
        workers=workers,
        cache=cache,
        progress=progress,
        engine=engine,
        desc=f"{base.name} coupling_map",
    )
    names = [layer.name for layer in base.policy.layers]
    enforce = [layer.name for layer in base.policy.layers if layer.mode == "enforce"]
    df["binding"] = [_binding(row, enforce) for _, row in df.iterrows()]
    rows = []
    for _, runs in df.groupby("point", sort=True):
        counts = runs["binding"].value_counts()
        order = [*enforce, NONE]
        top = max(order, key=lambda n: (counts.get(n, 0), -order.index(n)))
        never = [n for n in names if runs[f"first_trip_s:{n}"].isna().all()]
        row: dict[str, Any] = {
            x: runs[x].iat[0],
            y: runs[y].iat[0],
            "binding_layer": top,
            "binding_share": counts.get(top, 0) / len(runs),
        }
        row.update({c: float(runs[c].mean()) for c in _GAP_COLUMNS})
        row["never_engages"] = ", ".join(never)
        row.update({f"never:{n}": n in never for n in names})
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(x=x, y=y, layers=names)
    return out
