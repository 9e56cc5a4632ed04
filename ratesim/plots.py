"""Plots of a simulation :class:`~ratesim.results.Result` (matplotlib).

Every plotting function takes the result and an optional ``ax``; with ``ax=None`` it creates a new
figure (through pyplot, so notebooks show it), draws into it and returns the ``Axes``.
:func:`save_all` renders every plot to PNG files without touching pyplot's global state.

The functions read only the documented columns of ``Result.timeseries`` (indexed by the bin
start ``time_s``) and ``Result.requests``; see ``docs/guides/simulation.md``. Counts per time-series
bin are drawn as rates (requests per second of simulated time) so that plots of runs with
different bin widths compare directly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "PLOTS",
    "latency",
    "oracle_gap",
    "remaining",
    "save_all",
    "timeline",
    "use_agg_if_headless",
]

_US_PER_MS = 1000.0
# Layer colours avoid black and green, which mark arrivals and admissions.
_LAYER_COLORS = (
    "tab:red",
    "tab:orange",
    "tab:purple",
    "tab:brown",
    "tab:blue",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
)
_LATENCY_COLUMNS = (
    ("latency_p50_us", "p50"),
    ("latency_p99_us", "p99"),
    ("latency_p999_us", "p99.9"),
)


def use_agg_if_headless() -> None:
    """Select matplotlib's Agg backend, but only when nobody chose a backend and there is no display.

    A backend set by ``MPLBACKEND``, by ``matplotlib.use`` / rcParams, or by a Jupyter kernel
    (the inline backend) is always left alone.
    """
    if os.environ.get("MPLBACKEND") or "ipykernel" in sys.modules:
        return
    if matplotlib.rcParams._get_backend_or_none() is not None:  # type: ignore[attr-defined]
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform != "linux":
        return
    matplotlib.use("Agg")


def _new_axes(ax: Axes | None) -> Axes:
    """``ax`` itself, or the single Axes of a new pyplot figure."""
    if ax is not None:
        return ax
    use_agg_if_headless()
    import matplotlib.pyplot as plt  # imported late: the backend must be settled first

    _, new_ax = plt.subplots(figsize=(10, 4.5), layout="constrained")
    return new_ax


def _columns(frame: pd.DataFrame, prefix: str) -> list[tuple[str, str]]:
    """``(column, layer)`` pairs for every column named ``<prefix>:<layer>``, in frame order."""
    start = prefix + ":"
    return [(str(c), str(c)[len(start) :]) for c in frame.columns if str(c).startswith(start)]


def bin_width_s(result: Any) -> float:
    """Width of one time-series bin in seconds (the scenario's ``interval_s``, else the index step)."""
    width = getattr(getattr(result, "scenario", None), "interval_s", None)
    if isinstance(width, int | float) and width > 0:
        return float(width)
    index = np.asarray(result.timeseries.index, dtype=float)
    if len(index) >= 2:
        return float(np.median(np.diff(index)))
    return 1.0


def _time_axis(ax: Axes, result: Any) -> None:
    ax.set_xlabel("simulated time (s)")
    ax.grid(True, alpha=0.3)
    name = getattr(getattr(result, "scenario", None), "name", None)
    if name:
        ax.set_title(f"{ax.get_title()} — {name}")


def _bin_mid_s(result: Any) -> np.ndarray:
    """Bin centres in seconds: a per-bin count is the average over the bin, drawn at its middle."""
    start = np.asarray(result.timeseries.index, dtype=float)
    return start + bin_width_s(result) / 2.0


def _layer_color(position: int) -> str:
    return _LAYER_COLORS[position % len(_LAYER_COLORS)]


def _shadow_layers(result: Any) -> set[str]:
    """Names of the layers in shadow mode, from ``result.summary`` (empty when it does not say)."""
    summary = getattr(result, "summary", None)
    if not isinstance(summary, pd.DataFrame) or not {"layer", "mode"} <= set(summary.columns):
        return set()
    return {str(name) for name in summary.loc[summary["mode"] == "shadow", "layer"]}


def timeline(result: Any, ax: Axes | None = None) -> Axes:
    """Arrivals, admissions and rejections per layer over time, as rates (requests/s).

    One line for ``arrivals`` (with clients that retry, a dashed one for the retries among them),
    one for ``admitted``, one per enforcing layer (``rejected:<layer>``;
    layers that ``result.summary`` marks as shadow are left out, they never reject), a dashed
    one in the layer's colour per layer with shadow rejections (``shadow_rejected:<layer>``),
    and a dotted one per layer whose failure mode decided requests (``fail_open``,
    ``fail_closed``, ``local_allowed`` and ``local_rejected`` added up; the label says which).
    Layers that never shadow-reject or fail are left out: their line would be zero throughout.
    The scenario's faults are shaded behind the lines: Redis outages (refused, black hole),
    network partitions and latency spikes as bands, failovers as vertical lines, and the
    spans where ``topology.changes`` scaled the gateway out or in as bands with a dashed line
    and the live node count at each scale event. Each point is
    the average rate over one bin, drawn at the bin's middle; the rate axis starts at zero and
    the legend sits outside the data.
    """
    ax = _new_axes(ax)
    ts = result.timeseries
    t = _bin_mid_s(result)
    per_s = 1.0 / bin_width_s(result)
    _shade_faults(ax, getattr(result, "scenario", None))
    ax.plot(
        t, ts["arrivals"].to_numpy(dtype=float) * per_s, color="black", lw=1.5, label="arrivals"
    )
    ax.plot(t, ts["admitted"].to_numpy(dtype=float) * per_s, color="tab:green", label="admitted")
    if "retries" in ts and ts["retries"].sum() > 0:  # clients that retry: part of the arrivals
        retries = ts["retries"].to_numpy(dtype=float) * per_s
        ax.plot(t, retries, color="black", ls="--", lw=1, label="of which retries")
    colors: dict[str, str] = {}
    shadow = _shadow_layers(result)
    for pos, (col, layer) in enumerate(_columns(ts, "rejected")):
        colors[layer] = _layer_color(pos)
        if layer in shadow:
            continue  # a shadow layer rejects nothing: its dashed line below says what it would
        values = ts[col].to_numpy(dtype=float) * per_s
        ax.plot(t, values, color=colors[layer], label=f"rejected by {layer}")
    for col, layer in _columns(ts, "shadow_rejected"):
        values = ts[col].to_numpy(dtype=float)
        if np.nansum(values) > 0:
            color = colors.get(layer, "tab:gray")
            ax.plot(t, values * per_s, ls="--", color=color, label=f"shadow-rejected by {layer}")
    for layer, (values, kinds) in _failure_decisions(ts).items():
        color = colors.get(layer, "tab:gray")
        label = f"{layer}: {' + '.join(kinds)} (failure mode)"
        ax.plot(t, values * per_s, ls=":", lw=2, color=color, label=label)
    ax.set_title("Traffic and decisions")
    ax.set_ylabel("rate (requests/s, average per bin)")
    ax.set_ylim(bottom=0)
    _time_axis(ax, result)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0)
    return ax


_FAILURE_KINDS = ("fail_open", "fail_closed", "local_allowed", "local_rejected")


def _failure_decisions(ts: pd.DataFrame) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per layer with any: its failure-mode decisions per bin, and which kinds it made."""
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    for kind in _FAILURE_KINDS:
        for col, layer in _columns(ts, kind):
            values = ts[col].to_numpy(dtype=float)
            if np.nansum(values) <= 0:
                continue
            total, kinds = out.get(layer, (np.zeros(len(ts)), []))
            out[layer] = (total + np.nan_to_num(values), [*kinds, kind])
    return out


def _shade_faults(ax: Axes, scenario: Any) -> None:
    """Shade the scenario's fault windows behind the data (one legend entry per kind)."""
    redis = getattr(scenario, "redis", None)
    network = getattr(scenario, "network", None)
    bands: list[tuple[float, float, str, str]] = []
    for o in getattr(redis, "outages", None) or ():
        kind = "Redis refusing" if o.kind == "refused" else "Redis black hole"
        bands.append((o.start_s, o.end_s, kind, "tab:red" if o.kind == "refused" else "black"))
    for part in getattr(network, "partitions", None) or ():
        bands.append((part.start_s, part.end_s, "partition", "tab:purple"))
    for spike in getattr(network, "spikes", None) or ():
        bands.append((spike.start_s, spike.end_s, "latency spike", "tab:orange"))
    seen: set[str] = set()
    for start, end, label, color in bands:
        ax.axvspan(
            start, end, color=color, alpha=0.12, lw=0, label=None if label in seen else label
        )
        seen.add(label)
    for k, f in enumerate(getattr(redis, "failovers", None) or ()):
        ax.axvline(f.at_s, color="tab:red", ls="-.", lw=1, label="failover" if k == 0 else None)
    _shade_scale_events(ax, scenario)


def _shade_scale_events(ax: Axes, scenario: Any) -> None:
    """Shade the spans where ``topology.changes`` has more (teal) or fewer (grey) nodes live
    than at the start, a dashed line at each scale event and its node count above it."""
    topo = getattr(scenario, "topology", None)
    changes = list(getattr(topo, "changes", None) or ())
    if not changes:
        return
    base = int(getattr(topo, "nodes", 1))
    ends = [c.at_s for c in changes[1:]] + [float(scenario.duration_s)]
    seen: set[str] = set()
    for c, end in zip(changes, ends, strict=True):
        if c.nodes != base:
            label = "scaled out" if c.nodes > base else "scaled in"
            color = "tab:cyan" if c.nodes > base else "tab:gray"
            ax.axvspan(
                c.at_s, end, color=color, alpha=0.12, lw=0, label=None if label in seen else label
            )
            seen.add(label)
        ax.axvline(c.at_s, color="tab:cyan", ls="--", lw=1)
        ax.annotate(
            f"{c.nodes} node{'s' if c.nodes != 1 else ''}",
            (c.at_s, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize="small",
            color="tab:cyan",
        )


def latency(result: Any, ax: Axes | None = None) -> Axes:
    """Decision-latency percentiles (p50, p99, p99.9) per time bin, in ms on a log scale.

    When the time series carries a non-zero ``pool_wait_p99_us`` it is drawn too (dotted): the
    connection-pool wait is the part of the decision latency the seed's pool change attacked.
    """
    ax = _new_axes(ax)
    ts = result.timeseries
    t = _bin_mid_s(result)
    for col, label in _LATENCY_COLUMNS:
        ax.plot(t, ts[col].to_numpy(dtype=float) / _US_PER_MS, label=label)
    if "pool_wait_p99_us" in ts.columns:
        wait = ts["pool_wait_p99_us"].to_numpy(dtype=float)
        if np.nansum(wait) > 0:
            ax.plot(t, wait / _US_PER_MS, ls=":", color="gray", label="pool wait p99")
    ax.set_yscale("log")
    ax.set_title("Decision latency")
    ax.set_ylabel("decision latency (ms, log scale)")
    _time_axis(ax, result)
    ax.legend(loc="upper left", fontsize="small")
    return ax


def oracle_gap_frame(result: Any) -> pd.DataFrame:
    """Over-admitted and wrongly rejected requests per time bin, against the oracle run.

    A request is *over-admitted* when the simulated system admits it and the oracle (perfect
    clocks, no latency, one global state) rejects it, *wrongly rejected* in the opposite case.
    Rows of ``result.requests`` and ``result.oracle.requests`` are matched by position (the
    oracle replays the same arrivals in the same order); if they do not line up, only the net
    difference of admissions per bin is available and it is split by sign.
    Returns counts (not rates) indexed like ``result.timeseries``.
    """
    oracle = getattr(result, "oracle", None)
    if oracle is None:
        raise ValueError("result.oracle is None: this run has no oracle to compare with")
    index = result.timeseries.index
    width = bin_width_s(result)
    req, ref = result.requests, oracle.requests
    aligned = len(req) == len(ref) and np.array_equal(
        req["time_us"].to_numpy(), ref["time_us"].to_numpy()
    )
    if aligned:
        mine = req["admitted"].to_numpy(dtype=bool)
        theirs = ref["admitted"].to_numpy(dtype=bool)
        bins = np.floor(req["time_us"].to_numpy(dtype=float) / 1e6 / width) * width
        frame = pd.DataFrame({"bin": bins, "over": mine & ~theirs, "wrong": ~mine & theirs})
        counts = frame.groupby("bin")[["over", "wrong"]].sum()
        counts = counts.reindex(np.asarray(index, dtype=float), fill_value=0)
        over, wrong = counts["over"].to_numpy(), counts["wrong"].to_numpy()
    else:
        net = result.timeseries["admitted"].to_numpy(dtype=np.int64) - oracle.timeseries[
            "admitted"
        ].reindex(index, fill_value=0).to_numpy(dtype=np.int64)
        over, wrong = np.clip(net, 0, None), np.clip(-net, 0, None)
    return pd.DataFrame(
        {"over_admitted": over.astype(np.int64), "wrongly_rejected": wrong.astype(np.int64)},
        index=index,
    )


def oracle_gap(result: Any, ax: Axes | None = None) -> Axes:
    """Over-admitted and wrongly rejected requests vs the oracle over time, as rates (requests/s).

    Over-admissions are drawn above zero and wrong rejections below it, so the two kinds of
    error never hide each other; see :func:`oracle_gap_frame` for the definitions.
    """
    ax = _new_axes(ax)
    gap = oracle_gap_frame(result)
    t = _bin_mid_s(result)
    per_s = 1.0 / bin_width_s(result)
    over = gap["over_admitted"].to_numpy(dtype=float) * per_s
    wrong = gap["wrongly_rejected"].to_numpy(dtype=float) * per_s
    ax.plot(t, over, color="tab:red", label="over-admitted (oracle rejects)")
    ax.plot(t, -wrong, color="tab:blue", label="wrongly rejected (oracle admits)")
    ax.fill_between(t, 0, over, color="tab:red", alpha=0.2)
    ax.fill_between(t, 0, -wrong, color="tab:blue", alpha=0.2)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_title("Gap to the oracle")
    ax.set_ylabel("requests/s (+ over-admitted, − wrongly rejected)")
    _time_axis(ax, result)
    ax.legend(loc="upper left", fontsize="small")
    return ax


def remaining(result: Any, ax: Axes | None = None) -> Axes:
    """The seed's ``bucket_remaining_gauge``: remaining tokens/requests per layer, last value per bin."""
    ax = _new_axes(ax)
    ts = result.timeseries
    t = np.asarray(ts.index, dtype=float)
    # The gauge is the last value reported in a bin: drawn at the bin's end.
    t = t + bin_width_s(result)
    for pos, (col, layer) in enumerate(_columns(ts, "remaining")):
        values = ts[col].to_numpy(dtype=float)
        ax.plot(t, values, marker=".", color=_layer_color(pos), label=layer)
    ax.set_title("Remaining quota (bucket_remaining_gauge)")
    ax.set_ylabel("remaining (tokens or requests, last value in bin)")
    _time_axis(ax, result)
    if ax.get_lines():
        ax.legend(loc="best", fontsize="small")
    return ax


PlotFunction = Callable[[Any, Axes | None], Axes]

#: The plots :func:`save_all` writes, by file stem.
PLOTS: dict[str, PlotFunction] = {
    "timeline": timeline,
    "latency": latency,
    "oracle_gap": oracle_gap,
    "remaining": remaining,
}


def save_all(result: Any, out_dir: str | os.PathLike[str], dpi: int = 110) -> list[Path]:
    """Write every plot in :data:`PLOTS` as ``<out_dir>/<name>.png``; return the paths written.

    Figures are built without pyplot (so nothing leaks into an interactive session and no GUI
    backend is needed). The oracle plot is skipped when the result has no oracle run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, draw in PLOTS.items():
        if name == "oracle_gap" and getattr(result, "oracle", None) is None:
            continue
        fig = Figure(figsize=(10, 4.5), layout="constrained")
        draw(result, fig.add_subplot())
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        written.append(path)
    return written


#: The experiment analyses' plots (``ratesim.experiments.plots``), reachable from here too.
EXPERIMENT_PLOTS = ("coupling_map", "degradation_order", "first_trip", "isolate_layers", "metric")


def __getattr__(name: str) -> Any:
    # loaded on first use: the experiments layer imports more than a run's plots need
    if name in EXPERIMENT_PLOTS:
        from .experiments import plots as experiment_plots

        return getattr(experiment_plots, name)
    raise AttributeError(f"module 'ratesim.plots' has no attribute {name!r}")
