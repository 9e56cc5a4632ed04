"""Plots of a simulation :class:`~ratesim.results.Result` (matplotlib).

Every plotting function takes the result and an optional ``ax``; with ``ax=None`` it creates a new
figure (through pyplot, so notebooks show it), draws into it and returns the ``Axes``.
:func:`save_all` renders every plot to PNG files without touching pyplot's global state.

The functions read the documented columns of ``Result.timeseries`` (indexed by the bin start
``time_s``) and ``Result.requests``, the scenario (its faults, clocks and policy) and, for the
quota left, ``Result.data``; see ``docs/guides/simulation.md``. The tables they draw come from
:mod:`ratesim.plot_data` (re-exported here). Counts per time-series bin are drawn as rates
(requests per second of simulated time), each at its bin's centre, so that plots of runs with
different bin widths compare directly; every legend sits to the right of the data.

* :func:`timeline` - arrivals, admissions, rejections and failure-mode decisions per layer;
* :func:`latency` - decision-latency percentiles and the pool wait;
* :func:`oracle_gap` - the gap to the oracle, split by layer, with net lines;
* :func:`remaining` - the quota left, as a share of each key's capacity, per layer;
* :func:`nodes` - each gateway node's admitted share, labelled with its clock.
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

from .plot_data import (
    bin_width_s,
    node_frame,
    oracle_gap_by_layer,
    oracle_gap_frame,
    remaining_share_frame,
)

__all__ = [
    "PLOTS",
    "bin_width_s",
    "latency",
    "node_frame",
    "nodes",
    "oracle_gap",
    "oracle_gap_by_layer",
    "oracle_gap_frame",
    "remaining",
    "remaining_share_frame",
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
# Nodes get their own palette: a node is not a layer.
_NODE_COLORS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:gray",
    "tab:olive",
    "tab:cyan",
)
_NODE_MARKERS = ("o", "s", "^", "D", "v", "x", "+", "*")
_NODE_STYLES = ("-", "--", "-.", ":")
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
    _legend_outside(ax)
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


def _legend_outside(ax: Axes, title: str | None = None) -> None:
    """The legend to the right of the data, so it never covers a line."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
            borderaxespad=0,
            title=title,
            title_fontsize="small",
        )


def _positive_or_nan(values: np.ndarray) -> np.ndarray:
    """``values`` with non-positive entries as NaN: a log axis shows a gap, not a plunge."""
    out = values.astype(float).copy()
    out[~(out > 0)] = np.nan
    return out


def latency(result: Any, ax: Axes | None = None) -> Axes:
    """Decision-latency percentiles (p50, p99, p99.9) per time bin, in ms.

    When the time series carries a non-zero ``pool_wait_p99_us`` it is drawn too (dotted): the
    connection-pool wait is the part of the decision latency the seed's pool change attacked.
    The axis is logarithmic, from just below the smallest positive value to above the largest
    (bins where a line is zero leave a gap in it); a run whose decisions all took 0 ms (a
    zero-latency scenario) gets a linear axis from zero and a note saying so. The scenario's
    fault windows (latency spikes, outages, partitions) are shaded as on :func:`timeline`.
    """
    ax = _new_axes(ax)
    ts = result.timeseries
    t = _bin_mid_s(result)
    _shade_faults(ax, getattr(result, "scenario", None))
    series = [
        (ts[col].to_numpy(dtype=float) / _US_PER_MS, label) for col, label in _LATENCY_COLUMNS
    ]
    wait = None
    if "pool_wait_p99_us" in ts.columns:
        wait = ts["pool_wait_p99_us"].to_numpy(dtype=float) / _US_PER_MS
        if not np.nansum(wait) > 0:
            wait = None
    everything = np.concatenate([v for v, _ in series] + ([wait] if wait is not None else []))
    positive = everything[np.isfinite(everything) & (everything > 0)]
    log = len(positive) > 0
    shown = _positive_or_nan if log else (lambda v: v)
    for values, label in series:
        ax.plot(t, shown(values), label=label)
    if wait is not None:
        ax.plot(t, shown(wait), ls=":", lw=2, color="gray", label="pool wait p99")
    ax.set_title("Decision latency")
    if log:
        ax.set_yscale("log")
        ax.set_ylim(positive.min() / 1.5, positive.max() * 1.5)
        ax.set_ylabel("decision latency (ms, log scale)")
    else:
        ax.set_ylim(0, 1)
        ax.set_ylabel("decision latency (ms)")
        ax.text(
            0.5,
            0.5,
            "every decision took 0 ms (zero-latency scenario)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="dimgray",
        )
    _time_axis(ax, result)
    _legend_outside(ax)
    return ax


def oracle_gap(result: Any, ax: Axes | None = None) -> Axes:
    """The gap to the oracle over time, as rates (requests/s), split by layer, with net lines.

    Stacked areas, one colour per layer (its :func:`timeline` colour): over-admitted requests
    above zero, charged to the layer that rejects them in the oracle, and wrongly rejected ones
    below zero, charged to the layer that rejected them (see
    :func:`~ratesim.plot_data.oracle_gap_by_layer`). Lines: each such layer's *net*
    (over minus wrong) in its colour, and the net of all layers in black: above zero the system
    let more through than the oracle, below it less. Without aligned oracle rows only the totals
    (:func:`~ratesim.plot_data.oracle_gap_frame`) are drawn.
    """
    ax = _new_axes(ax)
    t = _bin_mid_s(result)
    per_s = 1.0 / bin_width_s(result)
    gap = oracle_gap_frame(result)
    by_layer = oracle_gap_by_layer(result)
    parts: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    if by_layer is not None:
        for pos, (_col, layer) in enumerate(_columns(by_layer, "net")):
            over_l = by_layer[f"over:{layer}"].to_numpy(dtype=float) * per_s
            wrong_l = by_layer[f"wrong:{layer}"].to_numpy(dtype=float) * per_s
            if over_l.any() or wrong_l.any():
                parts.append((layer, _layer_color(pos), over_l, wrong_l))
    else:
        over_all = gap["over_admitted"].to_numpy(dtype=float) * per_s
        wrong_all = gap["wrongly_rejected"].to_numpy(dtype=float) * per_s
        parts.append(("all layers", "tab:gray", over_all, wrong_all))
    up, down = np.zeros(len(t)), np.zeros(len(t))
    for layer, color, over_l, wrong_l in parts:
        ax.fill_between(
            t,
            up,
            up + over_l,
            color=color,
            alpha=0.3,
            lw=0,
            label=layer,
        )
        ax.fill_between(t, -down, -down - wrong_l, color=color, alpha=0.3, lw=0)
        up, down = up + over_l, down + wrong_l
    if len(parts) > 1:  # with one layer its net is the net of all layers, drawn below
        for layer, color, over_l, wrong_l in parts:
            ax.plot(t, over_l - wrong_l, color=color, lw=1.2, label=f"net, {layer}")
    net = gap["over_admitted"].to_numpy(dtype=float) - gap["wrongly_rejected"].to_numpy(dtype=float)
    ax.plot(t, net * per_s, color="black", lw=1.5, ls="--", label="net, all layers")
    ax.axhline(0.0, color="black", lw=0.6)
    if not parts:
        ax.text(
            0.5,
            0.75,
            "every decision matches the oracle's",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="dimgray",
        )
    ax.set_title("Gap to the oracle, by layer")
    ax.set_ylabel("requests/s (+ over-admitted, − wrongly rejected)")
    _time_axis(ax, result)
    _legend_outside(ax, title="areas: ↑ over-admitted,\n↓ wrongly rejected")
    return ax


def remaining(result: Any, ax: Axes | None = None) -> Axes:
    """Quota left per layer, as a share (%) of capacity, one line per layer, at bin centres.

    Each point is the mean, over the requests the layer decided in the bin, of the quota their
    key had left divided by that key's capacity (its tier's, for a tiered layer): 100% is an idle
    key, 0% an exhausted one, so layers of very different sizes share one axis. Each request
    counts on its own key (per-user layers: its user's; a site-wide layer: the one site key).
    See :func:`~ratesim.plot_data.remaining_share_frame`.
    """
    ax = _new_axes(ax)
    share = remaining_share_frame(result)
    t = _bin_mid_s(result)
    for pos, layer in enumerate(share.columns):
        values = share[layer].to_numpy(dtype=float) * 100.0
        ax.plot(t, values, marker=".", color=_layer_color(pos), label=str(layer))
    ax.set_title("Quota left, as a share of capacity")
    ax.set_ylabel("quota left (% of the key's capacity)")
    ax.set_ylim(0, 105)
    _time_axis(ax, result)
    _legend_outside(ax, title="mean over each bin's\nrequests, own key")
    return ax


def _clock_label(scenario: Any, node: int) -> str:
    """``node 3 (clock +200 ms, +100 ppm)`` from the scenario's clocks, or ``node 3``."""
    clocks = getattr(getattr(scenario, "topology", None), "clocks", None)
    if clocks is not None and not isinstance(clocks, list | tuple):
        clocks = [clocks] * (node + 1)  # one clock spec for every node
    if not clocks or node >= len(clocks):
        return f"node {node}"
    c = clocks[node]
    steps = f", {len(c.steps)} step(s)" if getattr(c, "steps", None) else ""
    return f"node {node} (clock {c.offset_ms:+g} ms, {c.drift_ppm:+g} ppm{steps})"


def nodes(result: Any, ax: Axes | None = None) -> Axes:
    """The share (%) of each gateway node's arrivals it admitted, per bin: one line per node.

    Labelled with each node's clock (offset and drift from ``scenario.topology.clocks``): with
    client-supplied time, a node whose clock runs ahead spends a shared limit before the others
    and takes the admissions (the story of the ``clock-skew`` scenario). Empty bins of a node
    are gaps. See :func:`~ratesim.plot_data.node_frame`.
    """
    ax = _new_axes(ax)
    frame = node_frame(result)
    t = _bin_mid_s(result)
    scenario = getattr(result, "scenario", None)
    _shade_faults(ax, scenario)
    for pos, (col, node) in enumerate(_columns(frame, "arrivals")):
        arrivals = frame[col].to_numpy(dtype=float)
        admitted = frame[f"admitted:{node}"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(arrivals > 0, admitted / arrivals * 100.0, np.nan)
        # Nodes often coincide (same clocks, same share): shrinking markers and their own
        # line styles keep every node visible where lines lie on top of each other.
        ax.plot(
            t,
            share,
            marker=_NODE_MARKERS[pos % len(_NODE_MARKERS)],
            ms=max(3.0, 11.0 - 2.5 * pos),
            clip_on=False,
            ls=_NODE_STYLES[pos % len(_NODE_STYLES)],
            mfc="none",
            color=_NODE_COLORS[pos % len(_NODE_COLORS)],
            label=_clock_label(scenario, int(node)),
        )
    ax.set_title("Admitted share per gateway node")
    ax.set_ylabel("admitted (% of the node's arrivals)")
    ax.set_ylim(0, 105)
    _time_axis(ax, result)
    _legend_outside(ax)
    return ax


PlotFunction = Callable[[Any, Axes | None], Axes]

#: The plots :func:`save_all` writes, by file stem.
PLOTS: dict[str, PlotFunction] = {
    "timeline": timeline,
    "latency": latency,
    "oracle_gap": oracle_gap,
    "remaining": remaining,
    "nodes": nodes,
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
