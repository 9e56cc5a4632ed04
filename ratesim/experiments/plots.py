"""Plots of the experiment tables (matplotlib).

Each function takes a table from :mod:`ratesim.experiments` and an optional ``ax``; with
``ax=None`` it creates a new figure (through pyplot, so notebooks show it), draws into it and
returns the ``Axes``.

* :func:`metric` - a metric's mean against a parameter, with its confidence band
  (from :func:`~ratesim.experiments.summarize`);
* :func:`first_trip` - when each layer first tripped and the offered load then;
* :func:`isolate_layers` - each layer's first trip alone and in the stack;
* :func:`degradation_order` - the share each layer rejects along the ramp, and where it engages;
* :func:`coupling_map` - the binding layer over a 2-D grid, with contours of the oracle gap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

from ..plots import use_agg_if_headless
from .stats import ci_name

__all__ = ["coupling_map", "degradation_order", "first_trip", "isolate_layers", "metric"]

# The same layer colours as ratesim.plots (no black or green: they mark arrivals, admissions).
_COLORS = (
    "tab:red",
    "tab:orange",
    "tab:purple",
    "tab:brown",
    "tab:blue",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)
_NONE_COLOR = "#dddddd"


def _new_axes(ax: Axes | None, size: tuple[float, float] = (8.0, 4.5)) -> Axes:
    if ax is not None:
        return ax
    use_agg_if_headless()
    import matplotlib.pyplot as plt  # imported late: the backend must be settled first

    _, new_ax = plt.subplots(figsize=size, layout="constrained")
    return new_ax


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def metric(
    summary: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    confidence: float = 0.95,
    ax: Axes | None = None,
) -> Axes:
    """``<y>_mean`` against parameter ``x`` with its confidence band, one line per ``hue``."""
    ax = _new_axes(ax)
    ci = ci_name(confidence)
    needed = [x, f"{y}_mean"] + ([hue] if hue else [])
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(f"the summary has no column(s) {missing}; is it from summarize()?")
    groups = summary.groupby(hue, sort=True) if hue else [(None, summary)]
    for i, (value, part) in enumerate(groups):
        part = part.sort_values(x)
        xs = part[x].to_numpy(dtype=float)
        shown = value[0] if isinstance(value, tuple) else value
        label = f"{hue} = {shown!s}" if hue else y
        ax.plot(xs, part[f"{y}_mean"], marker="o", color=_color(i), label=label)
        low, high = f"{y}_{ci}_low", f"{y}_{ci}_high"
        if low in part and part[low].notna().any():
            ax.fill_between(xs, part[low], part[high], color=_color(i), alpha=0.2, lw=0)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} (mean, {ci[2:]}% interval)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def first_trip(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Each layer's first trip time (filled: enforce, hollow: shadow), labelled with the
    offered load; layers that never trip are listed as such."""
    ax = _new_axes(ax, (8.0, 0.8 + 0.6 * len(table)))
    names = list(table["layer"])
    ys = np.arange(len(names))[::-1]
    for y, (_, row) in zip(ys, table.iterrows(), strict=True):
        t = float(row["time_s"])
        shadow = row.get("mode") == "shadow"
        color = _color(names.index(row["layer"]))
        if math.isnan(t):
            ax.text(
                0, y, "  never trips", va="center", color="gray", transform=ax.get_yaxis_transform()
            )
            continue
        ax.plot([t], [y], "o", ms=10, color=color, mfc="white" if shadow else color, mew=2)
        ax.annotate(
            f"{t:.2f} s, {row['offered_per_s']:,.0f}/s offered",
            (t, y),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(
        ys,
        [
            f"{n}{' (shadow)' if m == 'shadow' else ''}"
            for n, m in zip(names, table.get("mode", [""] * len(names)), strict=True)
        ],
    )
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlabel("first trip (simulated s)")
    ax.set_title("First trip per layer, earliest first")
    ax.grid(True, axis="x", alpha=0.3)
    finite = table["time_s"].dropna()
    if len(finite):
        ax.set_xlim(0, float(finite.max()) * 1.55 + 1e-9)  # room for the labels
    return ax


def isolate_layers(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Per layer, the first trip alone (circle) and in the stack (square), joined by a line;
    labelled with how many replications masked it."""
    ax = _new_axes(ax, (8.0, 0.8 + 0.6 * len(table)))
    ys = np.arange(len(table))[::-1]
    finite = pd.concat([table["first_trip_alone_s"], table["first_trip_stacked_s"]]).dropna()
    right = float(finite.max()) if len(finite) else 1.0
    for i, (y, (_, row)) in enumerate(zip(ys, table.iterrows(), strict=True)):
        alone, stacked = float(row["first_trip_alone_s"]), float(row["first_trip_stacked_s"])
        color = _color(i)
        end = right * 1.1 if math.isnan(stacked) else stacked
        if not math.isnan(alone):
            style = ":" if math.isnan(stacked) else "-"
            ax.plot([alone, end], [y, y], color=color, lw=2, ls=style)
        # the hollow square under the dot: both show when the two times are equal
        if not math.isnan(stacked):
            ax.plot([stacked], [y], "s", ms=12, color=color, mfc="white", mew=2)
        if not math.isnan(alone):
            ax.plot([alone], [y], "o", ms=6, color=color)
        text = f"masked in {row['masked_in']}/{row['replications']}"
        if row["masked"] and not math.isnan(row["delay_s"]):
            text += (
                f" (+{row['delay_s']:.2f} s)"
                if math.isfinite(row["delay_s"])
                else " (never in stack)"
            )
        ax.annotate(
            text,
            (max(alone if not math.isnan(alone) else 0, end), y),
            xytext=(10, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(ys, list(table["layer"]))
    ax.set_ylim(-0.7, len(table) - 0.3)
    ax.set_xlim(0, right * 1.45)
    ax.plot([], [], "s", color="gray", mfc="white", mew=2, label="in the stack")
    ax.plot([], [], "o", color="gray", label="alone (others in shadow)")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[-2:], labels[-2:], fontsize="small", loc="lower right")
    ax.set_xlabel("first trip (simulated s, median over replications)")
    ax.set_title("Each layer alone against the stack: masking")
    ax.grid(True, axis="x", alpha=0.3)
    return ax


def degradation_order(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Share of arrivals each layer rejects along the ramp (95% band), a dashed line where it
    engages; out-of-order layers are marked in the legend."""
    ax = _new_axes(ax)
    profile = table.attrs.get("profile")
    path = table.attrs.get("parameter")
    if profile is None or path is None:
        raise ValueError(
            "the table has no attrs['profile']: pass the result of degradation_order()"
        )
    layers = list(profile["layer"].drop_duplicates())
    for i, name in enumerate(layers):
        part = profile[profile["layer"] == name]
        xs = part[path].to_numpy(dtype=float)
        row = table[table["layer"] == name].iloc[0]
        flag = " - out of order" if row["out_of_order"] else ""
        flag += " - never engages" if row["never_engages"] else ""
        ax.plot(xs, 100 * part["share_rejected"], marker="o", color=_color(i), label=name + flag)
        if part["share_ci95_low"].notna().any():
            ax.fill_between(
                xs,
                100 * part["share_ci95_low"].clip(lower=0),
                100 * part["share_ci95_high"],
                color=_color(i),
                alpha=0.15,
                lw=0,
            )
        if not row["never_engages"]:
            ax.axvline(float(row["engages_at"]), color=_color(i), ls="--", lw=1)
    ax.set_xlabel(path)
    ax.set_ylabel("rejected, or would be (% of arrivals)")
    ax.set_title("Degradation order: dashed lines mark where each layer engages")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return ax


def coupling_map(
    table: pd.DataFrame, gap: str = "over_admitted_pct", ax: Axes | None = None
) -> Axes:
    """The binding layer as a categorical map over the grid, contours of ``gap`` (a column of
    the table), and hatching where a layer never engages while another does."""
    ax = _new_axes(ax, (8.0, 5.5))
    x, y = table.attrs.get("x"), table.attrs.get("y")
    layers = table.attrs.get("layers")
    if x is None or y is None or layers is None:
        raise ValueError("the table has no attrs['x'/'y'/'layers']: pass coupling_map()'s result")
    xs = np.sort(table[x].unique().astype(float))
    ys = np.sort(table[y].unique().astype(float))
    cats = [*layers, "none"]
    grid = table.pivot(index=y, columns=x, values="binding_layer").reindex(index=ys, columns=xs)
    codes = grid.apply(lambda col: col.map(cats.index)).to_numpy(dtype=float)
    colors = [_color(i) for i in range(len(layers))] + [_NONE_COLOR]
    xe, ye = _edges(xs), _edges(ys)
    for values, set_scale, set_ticks in (
        (xs, ax.set_xscale, ax.set_xticks),
        (ys, ax.set_yscale, ax.set_yticks),
    ):
        if _geometric(values):
            set_scale("log")  # a geometric grid gets equal cells: log axes, ticks at the values
            set_ticks(values, [f"{v:g}" for v in values])
            set_ticks([], minor=True)
    ax.pcolormesh(xe, ye, codes, cmap=ListedColormap(colors), vmin=-0.5, vmax=len(cats) - 0.5)
    handles = [
        Patch(
            color=colors[cats.index(c)],
            label=f"{c} binds first" if c != "none" else "no layer trips",
        )
        for c in cats
        if (codes == cats.index(c)).any()
    ]
    handles += _hatch_never(ax, table, x, y, xs, ys, layers)
    values = (
        table.pivot(index=y, columns=x, values=gap)
        .reindex(index=ys, columns=xs)
        .to_numpy(dtype=float)
    )
    if len(xs) > 1 and len(ys) > 1 and np.nanmax(values) > np.nanmin(values):
        cs = ax.contour(xs, ys, values, colors="black", linewidths=1)
        ax.clabel(cs, fmt=lambda v: f"{v:g}%", fontsize="small")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"Binding layer; contours: {gap}")
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


_HATCHES = ("//", "\\\\", "xx", "..", "++", "oo")


def _hatch_never(
    ax: Axes,
    table: pd.DataFrame,
    x: str,
    y: str,
    xs: np.ndarray,
    ys: np.ndarray,
    layers: list[str],
) -> list[Patch]:
    """Hatch, per layer, the cells where it never engages while another layer does (where no
    layer trips, the cell is grey already)."""
    xe, ye = _edges(xs), _edges(ys)
    handles = []
    tripping = table["binding_layer"] != "none"
    for i, name in enumerate(layers):
        cells = table[table[f"never:{name}"] & tripping]
        if cells.empty:
            continue
        hatch = _HATCHES[i % len(_HATCHES)]
        for cx, cy in zip(cells[x].astype(float), cells[y].astype(float), strict=True):
            j, k = int(np.searchsorted(xs, cx)), int(np.searchsorted(ys, cy))
            corner = (xe[j], ye[k])
            w, h = xe[j + 1] - xe[j], ye[k + 1] - ye[k]
            ax.add_patch(Rectangle(corner, w, h, fill=False, hatch=hatch, ec="white", lw=0))
        handles.append(
            Patch(facecolor="gray", edgecolor="white", hatch=hatch, label=f"{name} never engages")
        )
    return handles


def _geometric(values: np.ndarray) -> bool:
    """Whether sorted ``values`` (at least 3, all positive) grow by one ratio (within 1%)."""
    if len(values) < 3 or not (values > 0).all():
        return False
    ratios = values[1:] / values[:-1]
    return bool(ratios.min() > 1.05 and ratios.max() / ratios.min() < 1.01)


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted cell centres: half-way between neighbours, or (a geometric
    grid, drawn on log axes) at their geometric means."""
    if len(centers) == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    if _geometric(centers):
        return np.exp(_edges(np.log(centers)))
    mid = (centers[1:] + centers[:-1]) / 2
    return np.concatenate(([2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]))
