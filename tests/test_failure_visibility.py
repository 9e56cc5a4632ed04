"""Failure-mode decisions are visible: time-series columns, the summary's arithmetic, the
timeline plot's lines and fault shading, and the run summary's warnings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Patch, Polygon, Rectangle  # noqa: E402

from ratesim import plots, simulate  # noqa: E402
from ratesim.cli import format_summary  # noqa: E402
from ratesim.diagnostics import run_warnings  # noqa: E402
from ratesim.results import OUTCOMES, Result  # noqa: E402

KINDS = ("fail_open", "fail_closed", "local_allowed", "local_rejected", "shadow_rejected")


@pytest.fixture(scope="module")
def outage() -> Result:
    return simulate("redis-outage")


@pytest.fixture(scope="module")
def saturation() -> Result:
    return simulate("redis-saturation", engine="fast")


def test_failure_columns_count_the_outcomes_per_bin(outage: Result) -> None:
    req = outage.requests
    ts = outage.timeseries
    bins = (req["time_us"] // outage.scenario.interval_us).to_numpy()
    for name in outage.layer_names:
        outcome = req[f"layer:{name}"].astype(str).to_numpy()
        for kind in KINDS:
            expect = np.bincount(bins, weights=outcome == kind, minlength=len(ts))
            np.testing.assert_array_equal(ts[f"{kind}:{name}"].to_numpy(), expect)


def test_local_fallback_decides_only_around_the_outages(outage: Result) -> None:
    """A request falls back when its command meets the outage, so its decision comes at or
    after the outage's start and at most one decision timeout after its end."""
    sc = outage.scenario
    req = outage.requests
    decided = outage.data.decided_us
    assert sc.redis is not None
    windows = [(o.start_us, o.end_us) for o in sc.redis.outages]
    assert windows
    for pos, layer in enumerate(sc.policy.layers):
        outcome = req[f"layer:{layer.name}"].astype(str).to_numpy()
        local = np.isin(outcome, ["local_allowed", "local_rejected"])
        if not local.any():
            continue
        timeout_us = round(layer.timeout_ms * 1000)
        inside = np.zeros(len(req), dtype=bool)
        for a, b in windows:
            inside |= (decided >= a) & (decided <= b + timeout_us)
        assert inside[local].all(), pos
    assert sum(req[f"layer:{n}"].astype(str).eq("local_allowed").sum() for n in outage.layer_names)


@pytest.mark.parametrize("name", ["redis-outage", "redis-saturation", "exchange-surge"])
def test_summary_columns_add_up_to_reached(name: str) -> None:
    r = simulate(name, engine="auto")
    outc = r.data.outcomes
    for pos, row in enumerate(r.summary.itertuples(index=False)):
        parts = (
            row.allowed,
            row.limited,
            row.shadow_rejected,
            row.fail_open,
            row.fail_closed,
            row.local_allowed,
            row.local_rejected,
        )
        assert sum(parts) == row.reached
        assert row.reached == int((outc[:, pos] != OUTCOMES.index("not_reached")).sum())
        assert row.local == row.local_allowed + row.local_rejected
        if row.mode == "shadow":
            assert row.rejected == 0
        else:
            assert row.rejected == row.limited + row.fail_closed + row.local_rejected


def test_timeline_draws_failure_modes_and_shades_faults(outage: Result) -> None:
    fig, ax = plt.subplots()
    plots.timeline(outage, ax=ax)
    labels = [line.get_label() for line in ax.get_lines()]
    assert any("failure mode" in lab and "local_allowed" in lab for lab in labels)
    assert ax.get_ylim()[0] == 0
    spans = sorted(_x_extent(p) for p in ax.patches if p is not ax.patch)
    expect = sorted((o.start_s, o.end_s) for o in outage.scenario.redis.outages)  # type: ignore[union-attr]
    assert spans == expect
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Redis refusing" in legend and "Redis black hole" in legend
    plt.close(fig)


def _x_extent(p: Patch) -> tuple[float, float]:
    """A span's x extent: a Rectangle (matplotlib >= 3.9) or a Polygon (before)."""
    if isinstance(p, Rectangle):
        return round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6)
    assert isinstance(p, Polygon)
    xs = p.get_xy()[:, 0]
    return round(float(xs.min()), 6), round(float(xs.max()), 6)


def test_saturation_and_fail_open_are_warned_about(saturation: Result) -> None:
    warns = run_warnings(saturation)
    fo = saturation.summary.set_index("layer")["fail_open"]
    layer = str(fo.idxmax())
    assert any(w.startswith(f"layer {layer!r} decided") for w in warns)
    assert any(w.startswith("Redis saturated") for w in warns)
    text = format_summary(saturation)
    assert text.count("Warning: ") == len(warns)


def test_a_healthy_run_has_no_warnings() -> None:
    r = simulate("single-node-ideal")
    assert run_warnings(r) == []
    assert "Warning" not in format_summary(r)
