"""Tests for ratesim.plots on small synthetic results shaped exactly like the Result contract (docs/guides/simulation.md)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")  # the test process itself never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ratesim import plots, scenarios  # noqa: E402
from ratesim.model.clock import ClockSpec  # noqa: E402
from ratesim.model.latency import SpikeSpec  # noqa: E402
from ratesim.policy import GcraSpec, LayerSpec, SlidingLogSpec, TokenBucketSpec  # noqa: E402

LAYERS = ("local", "user", "global")
INTERVAL_S = 0.5


@dataclass
class FakeResult:
    """The attributes of ratesim.results.Result that the plots read."""

    scenario: Any
    timeseries: pd.DataFrame
    requests: pd.DataFrame
    oracle: Any = None
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    data: Any = None  # Result.data: per-request arrays (None: the plots use the time series)


def make_timeseries() -> pd.DataFrame:
    index = pd.Index([0.0, 0.5, 1.0, 1.5], name="time_s")
    data: dict[str, list[float]] = {
        "arrivals": [10, 20, 40, 10],
        "admitted": [10, 15, 20, 9],
        "rejected:local": [0, 1, 5, 0],
        "rejected:user": [0, 4, 10, 1],
        "rejected:global": [0, 0, 5, 0],
        "shadow_rejected:local": [0, 2, 3, 0],
        "shadow_rejected:user": [0, 0, 0, 0],
        "shadow_rejected:global": [0, 0, 0, 0],
        "remaining:local": [100, 80, 0, 30],
        "remaining:user": [50, 40, 10, 20],
        "remaining:global": [1000, 900, 500, 700],
        "redis_queue_depth": [0, 3, 12, 1],
        "pool_wait_p99_us": [0, 100, 5000, 200],
        "latency_p50_us": [500, 600, 900, 550],
        "latency_p99_us": [2000, 3000, 12000, 2500],
        "latency_p999_us": [4000, 8000, 90000, 5000],
    }
    return pd.DataFrame(data, index=index)


def make_requests(
    times_us: list[int], admitted: list[bool], rejected_by: list[str | None] | None = None
) -> pd.DataFrame:
    n = len(times_us)
    if rejected_by is None:
        rejected_by = [None if a else "global" for a in admitted]
    return pd.DataFrame(
        {
            "time_us": np.asarray(times_us, dtype=np.int64),
            "node": np.asarray(NODES[:n], dtype=np.int64),
            "user": np.arange(n, dtype=np.int64),
            "tier": pd.Categorical(["gold"] * n),
            "route": pd.Categorical(["/order"] * n),
            "abusive": np.zeros(n, dtype=bool),
            "cost": np.ones(n, dtype=np.int64),
            "admitted": np.asarray(admitted, dtype=bool),
            "rejected_by": rejected_by,
            "latency_us": np.full(n, 700, dtype=np.int64),
        }
    )


# Six requests over bins [0, 0.5) [0.5, 1.0) [1.0, 1.5) [1.5, 2.0):
TIMES = [100_000, 600_000, 700_000, 1_100_000, 1_200_000, 1_600_000]
SYSTEM = [True, True, True, False, True, False]
ORACLE = [True, False, True, True, False, False]
SYSTEM_BY = [None, None, None, "user", None, "global"]
ORACLE_BY = [None, "local", None, None, "user", "global"]
NODES = [0, 1, 0, 1, 1, 0]
# By hand: bin 0.5 has one over-admission (row 1); bin 1.0 has one wrong rejection (row 3) and
# one over-admission (row 4).
EXPECTED_OVER = [0, 1, 1, 0]
EXPECTED_WRONG = [0, 0, 1, 0]
# Charged by layer: row 1's over-admission to "local" (the oracle's rejecting layer), row 4's to
# "user"; row 3's wrong rejection to "user" (the system's rejecting layer). "global" agrees.
EXPECTED_BY_LAYER = {
    "over:local": [0, 1, 0, 0],
    "wrong:local": [0, 0, 0, 0],
    "net:local": [0, 1, 0, 0],
    "over:user": [0, 0, 1, 0],
    "wrong:user": [0, 0, 1, 0],
    "net:user": [0, 0, 0, 0],
    "over:global": [0, 0, 0, 0],
    "wrong:global": [0, 0, 0, 0],
    "net:global": [0, 0, 0, 0],
}
# Capacities at rest: token bucket burst 200, sliding log limit 100, GCRA max_burst + 1 = 2000.
CAPACITY = {"local": 200, "user": 100, "global": 2000}
POLICY = SimpleNamespace(
    layers=[
        LayerSpec(name="local", algorithm=TokenBucketSpec(rate=100, burst=200)),
        LayerSpec(name="user", algorithm=SlidingLogSpec(limit=100, window_s=60)),
        LayerSpec(
            name="global",
            scope="global",
            algorithm=GcraSpec(max_burst=1999, count_per_period=1000),
        ),
    ]
)


def make_result(with_oracle: bool = True) -> FakeResult:
    scenario = SimpleNamespace(name="synthetic", interval_s=INTERVAL_S, policy=POLICY)
    oracle = None
    if with_oracle:
        oracle = FakeResult(scenario, make_timeseries(), make_requests(TIMES, ORACLE, ORACLE_BY))
    return FakeResult(scenario, make_timeseries(), make_requests(TIMES, SYSTEM, SYSTEM_BY), oracle)


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


def labels(ax: Any) -> list[str]:
    """Labels of the labelled lines (a reference line such as ``axhline(0)`` has none)."""
    return [str(x.get_label()) for x in ax.get_lines() if not str(x.get_label()).startswith("_")]


def line(ax: Any, label: str) -> np.ndarray:
    for item in ax.get_lines():
        if item.get_label() == label:
            return np.asarray(item.get_ydata(), dtype=float)
    raise AssertionError(f"no line {label!r} in {labels(ax)}")


def test_timeline_lines_are_rates_per_second() -> None:
    ax = plots.timeline(make_result())
    assert labels(ax) == [
        "arrivals",
        "admitted",
        "rejected by local",
        "rejected by user",
        "rejected by global",
        "shadow-rejected by local",  # the all-zero shadow columns are left out
    ]
    # counts per 0.5 s bin -> requests per second
    np.testing.assert_allclose(line(ax, "arrivals"), [20, 40, 80, 20])
    np.testing.assert_allclose(line(ax, "rejected by user"), [0, 8, 20, 2])
    np.testing.assert_allclose(line(ax, "shadow-rejected by local"), [0, 4, 6, 0])
    # each bin's average rate sits at the bin's middle
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0.25, 0.75, 1.25, 1.75])
    by_label = {str(item.get_label()): item for item in ax.get_lines()}
    shadow = by_label["shadow-rejected by local"]
    assert shadow.get_linestyle() == "--"
    assert shadow.get_color() == by_label["rejected by local"].get_color()
    colors = [by_label[k].get_color() for k in labels(ax) if not k.startswith("shadow")]
    assert len(set(colors)) == len(colors)  # arrivals, admitted and each layer distinguishable
    assert "(s)" in ax.get_xlabel()
    assert "requests/s" in ax.get_ylabel()
    assert "synthetic" in ax.get_title()
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == labels(ax)


def test_timeline_leaves_out_the_rejections_of_a_shadow_layer() -> None:
    result = make_result()
    result.summary = pd.DataFrame({"layer": list(LAYERS), "mode": ["shadow", "enforce", "enforce"]})
    result.timeseries["rejected:local"] = 0  # what the engine reports for a shadow layer
    assert labels(plots.timeline(result)) == [
        "arrivals",
        "admitted",
        "rejected by user",
        "rejected by global",
        "shadow-rejected by local",
    ]


def test_bin_width_falls_back_to_the_index_step() -> None:
    result = make_result()
    result.scenario = SimpleNamespace(name="no-interval")
    ax = plots.timeline(result)
    np.testing.assert_allclose(line(ax, "admitted"), [20, 30, 40, 18])


def test_latency_is_in_ms_on_a_log_axis() -> None:
    ax = plots.latency(make_result())
    assert labels(ax) == ["p50", "p99", "p99.9", "pool wait p99"]
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(line(ax, "p99.9"), [4.0, 8.0, 90.0, 5.0])
    # the zero of the first bin is a gap on a log axis, not a plunge off it
    np.testing.assert_allclose(line(ax, "pool wait p99"), [np.nan, 0.1, 5.0, 0.2])
    assert "ms" in ax.get_ylabel()


def test_latency_keeps_every_positive_value_on_the_axis() -> None:
    ax = plots.latency(make_result())
    low, high = ax.get_ylim()
    values = np.concatenate([np.asarray(item.get_ydata(), dtype=float) for item in ax.get_lines()])
    values = values[np.isfinite(values)]
    # smallest positive: pool wait 100 us = 0.1 ms; largest: p99.9 90000 us = 90 ms
    assert values.min() == pytest.approx(0.1) and values.max() == pytest.approx(90.0)
    assert low < 0.1 and high > 90.0


def test_latency_of_a_zero_latency_run_is_linear_from_zero_without_warnings() -> None:
    result = make_result()
    for col in ("latency_p50_us", "latency_p99_us", "latency_p999_us", "pool_wait_p99_us"):
        result.timeseries[col] = 0
    fig = Figure(layout="constrained")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = plots.latency(result, fig.add_subplot())
        fig.savefig(Path("/dev/null"), format="png")
    assert ax.get_yscale() == "linear"
    assert ax.get_ylim()[0] == 0
    assert labels(ax) == ["p50", "p99", "p99.9"]
    assert any("0 ms" in text.get_text() for text in ax.texts)


def test_latency_marks_the_spike_window() -> None:
    result = make_result()
    result.scenario.network = SimpleNamespace(spikes=[SpikeSpec(start_s=0.5, end_s=1.0, factor=8)])
    ax = plots.latency(result)
    bands = [p for p in ax.patches if p.get_label() == "latency spike"]
    assert len(bands) == 1
    x0, x1 = bands[0].get_x(), bands[0].get_x() + bands[0].get_width()
    assert (x0, x1) == pytest.approx((0.5, 1.0))


def test_latency_leaves_out_an_all_zero_pool_wait() -> None:
    result = make_result()
    result.timeseries["pool_wait_p99_us"] = 0
    assert labels(plots.latency(result)) == ["p50", "p99", "p99.9"]


def test_oracle_gap_matches_hand_counted_disagreements() -> None:
    result = make_result()
    gap = plots.oracle_gap_frame(result)
    assert gap["over_admitted"].tolist() == EXPECTED_OVER
    assert gap["wrongly_rejected"].tolist() == EXPECTED_WRONG
    by_layer = plots.oracle_gap_by_layer(result)
    assert by_layer is not None
    assert {c: by_layer[c].tolist() for c in by_layer.columns} == EXPECTED_BY_LAYER


def test_oracle_gap_draws_a_net_line_per_layer_that_differs_and_one_for_all() -> None:
    ax = plots.oracle_gap(make_result())
    # "global" never differs from the oracle: no line for it
    assert labels(ax) == ["net, local", "net, user", "net, all layers"]
    per_s = 1 / INTERVAL_S
    np.testing.assert_allclose(line(ax, "net, local"), np.array([0, 1, 0, 0]) * per_s)
    np.testing.assert_allclose(line(ax, "net, user"), [0, 0, 0, 0])
    net = (np.array(EXPECTED_OVER) - np.array(EXPECTED_WRONG)) * per_s
    np.testing.assert_allclose(line(ax, "net, all layers"), net)
    # the per-layer split is shaded: one legend entry per differing layer
    shaded = [str(c.get_label()) for c in ax.collections if not str(c.get_label()).startswith("_")]
    assert shaded == ["local", "user"]


def test_oracle_gap_without_aligned_rows_uses_the_net_difference() -> None:
    result = make_result()
    result.oracle.requests = result.oracle.requests.iloc[:-1]
    result.oracle.timeseries["admitted"] = [12, 15, 10, 9]
    gap = plots.oracle_gap_frame(result)
    # system admitted [10, 15, 20, 9] minus oracle [12, 15, 10, 9] = [-2, 0, 10, 0]
    assert gap["over_admitted"].tolist() == [0, 0, 10, 0]
    assert gap["wrongly_rejected"].tolist() == [2, 0, 0, 0]
    assert plots.oracle_gap_by_layer(result) is None
    ax = plots.oracle_gap(result)
    np.testing.assert_allclose(line(ax, "net, all layers"), np.array([-2, 0, 10, 0]) / INTERVAL_S)


def test_oracle_gap_needs_an_oracle() -> None:
    with pytest.raises(ValueError, match="oracle"):
        plots.oracle_gap(make_result(with_oracle=False))


def test_remaining_is_a_share_of_capacity_per_layer_at_bin_centres() -> None:
    ax = plots.remaining(make_result())
    assert labels(ax) == list(LAYERS)  # one line per layer
    gauge = make_timeseries()
    for layer in LAYERS:
        expected = gauge[f"remaining:{layer}"].to_numpy(dtype=float) / CAPACITY[layer] * 100
        np.testing.assert_allclose(line(ax, layer), expected)
    np.testing.assert_allclose(line(ax, "local"), [50, 40, 0, 15])  # 100/200, 80/200, ...
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0.25, 0.75, 1.25, 1.75])
    assert ax.get_ylim() == (0, 105)
    assert "%" in ax.get_ylabel()
    assert "gauge" not in ax.get_title() and "share of capacity" in ax.get_title()
    legend = ax.get_legend()
    assert legend is not None and "key" in legend.get_title().get_text()


def test_remaining_divides_each_request_by_its_own_tier_capacity() -> None:
    result = make_result()
    tiered = LayerSpec(
        name="quota",
        algorithm=SlidingLogSpec(limit=100, window_s=60),
        tiers={"gold": {"limit": 400}},
    )
    result.scenario.policy = SimpleNamespace(layers=[tiered])
    result.requests["tier"] = pd.Categorical(["gold", "free", "gold", "free", "free", "gold"])
    # remaining per request; -1: the layer gave no figure (left out of the mean)
    result.data = SimpleNamespace(remaining=np.array([[200], [50], [100], [-1], [10], [0]]))
    # bin 0: 200/400; bin 0.5: 50/100 and 100/400; bin 1.0: 10/100 (row 3 has none); bin 1.5: 0
    expected = [0.5, (0.5 + 0.25) / 2, 0.1, 0.0]
    share = plots.remaining_share_frame(result)
    np.testing.assert_allclose(share["quota"], expected)


def test_nodes_draws_each_nodes_admitted_share_labelled_with_its_clock() -> None:
    result = make_result()
    result.scenario.topology = SimpleNamespace(
        clocks=[ClockSpec(), ClockSpec(offset_ms=50.0, drift_ppm=-20.0)]
    )
    ax = plots.nodes(result)
    assert labels(ax) == ["node 0 (clock +0 ms, +0 ppm)", "node 1 (clock +50 ms, -20 ppm)"]
    # node 0: rows 0 (bin 0, admitted), 2 (bin 0.5, admitted), 5 (bin 1.5, rejected)
    # node 1: rows 1 (bin 0.5, admitted), 3 (bin 1.0, rejected), 4 (bin 1.0, admitted)
    np.testing.assert_allclose(line(ax, labels(ax)[0]), [100, 100, np.nan, 0])
    np.testing.assert_allclose(line(ax, labels(ax)[1]), [np.nan, 100, 50, np.nan])
    assert ax.get_ylim() == (0, 105)
    first, second = ax.get_lines()[:2]
    # coinciding nodes stay distinguishable
    assert (first.get_marker(), first.get_linestyle()) != (
        second.get_marker(),
        second.get_linestyle(),
    )


def test_timeline_rate_axis_starts_at_zero() -> None:
    assert plots.timeline(make_result()).get_ylim()[0] == 0


@pytest.mark.parametrize("name", sorted(plots.PLOTS))
def test_the_legend_sits_outside_the_data(name: str) -> None:
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = plots.PLOTS[name](make_result(), fig.add_subplot())
    fig.draw_without_rendering()  # runs the constrained layout
    legend = ax.get_legend()
    assert legend is not None
    box, data = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= data.x1  # right of the axes: it covers no line
    assert box.x1 <= fig.bbox.x1 + 1  # and it is not cut off by the figure


@pytest.mark.parametrize("name", sorted(plots.PLOTS))
def test_drawing_and_saving_warns_nothing(name: str, tmp_path: Path) -> None:
    fig = Figure(layout="constrained")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.PLOTS[name](make_result(), fig.add_subplot())
        fig.savefig(tmp_path / f"{name}.png")


@pytest.mark.parametrize("name", sorted(plots.PLOTS))
def test_plot_into_a_given_axes(name: str) -> None:
    fig = Figure()
    given = fig.add_subplot(2, 1, 2)
    out = plots.PLOTS[name](make_result(), given)
    assert out is given
    assert len(given.get_lines()) > 0
    assert given.get_title()
    assert plt.get_fignums() == []  # drawing into a given Axes never opens a pyplot figure


def test_save_all_writes_non_empty_pngs(tmp_path: Path) -> None:
    paths = plots.save_all(make_result(), tmp_path / "plots")
    assert sorted(p.name for p in paths) == sorted(f"{n}.png" for n in plots.PLOTS)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 5000
    assert plt.get_fignums() == []


def test_save_all_skips_the_oracle_plot_without_an_oracle(tmp_path: Path) -> None:
    paths = plots.save_all(make_result(with_oracle=False), tmp_path)
    assert "oracle_gap.png" not in {p.name for p in paths}
    assert len(paths) == len(plots.PLOTS) - 1


def test_a_chosen_backend_is_never_replaced() -> None:
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import ratesim.plots as p; p.use_agg_if_headless()\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no DISPLAY, no MPLBACKEND
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "svg"


def test_headless_without_a_choice_gets_agg() -> None:
    code = (
        "import matplotlib, ratesim.plots as p; p.use_agg_if_headless()\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().lower() == "agg"


def test_the_experiment_plots_are_reachable_from_ratesim_plots() -> None:
    from ratesim.experiments import plots as experiment_plots

    for name in plots.EXPERIMENT_PLOTS:
        assert getattr(plots, name) is getattr(experiment_plots, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        plots.nope  # noqa: B018


def test_timeline_draws_the_retries_among_the_arrivals() -> None:
    result = make_result()
    result.timeseries["retries"] = [0, 5, 30, 0]  # with clients that retry (a count per bin)
    ax = plots.timeline(result)
    assert labels(ax)[:3] == ["arrivals", "admitted", "of which retries"]
    np.testing.assert_allclose(line(ax, "of which retries"), [0, 10, 60, 0])  # per 0.5 s bin
    assert "of which retries" not in labels(plots.timeline(make_result()))


def _coupling_table(xs: list[float], ys: list[float]) -> pd.DataFrame:
    rows = [
        {
            "a": x,
            "b": y,
            "binding_layer": "first" if x < y else "second",
            "gap": x * y,
            "never:first": False,
            "never:second": False,
        }
        for x in xs
        for y in ys
    ]
    table = pd.DataFrame(rows)
    table.attrs.update({"x": "a", "y": "b", "layers": ["first", "second"]})
    return table


def test_coupling_map_draws_a_geometric_grid_on_log_axes_with_equal_cells() -> None:
    from ratesim.experiments import plots as experiment_plots

    ax = experiment_plots.coupling_map(_coupling_table([0.25, 1, 4], [1, 2, 3]), gap="gap")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"  # 1, 2, 3 is not geometric
    np.testing.assert_allclose(ax.get_xticks(), [0.25, 1, 4])
    mesh = ax.collections[0]
    # cell edges at geometric means: 0.125, 0.5, 2, 8 -> every cell one factor 4 wide
    xe = np.unique(np.asarray(mesh.get_coordinates())[..., 0])
    np.testing.assert_allclose(xe, [0.125, 0.5, 2, 8])


def test_remaining_divides_a_local_fallback_decision_by_the_local_capacity() -> None:
    from ratesim.outcomes import ALLOWED, LOCAL_ALLOWED

    result = make_result()
    layer = LayerSpec(
        name="site",
        scope="global",
        key="*",
        failure_mode="local",
        algorithm=GcraSpec(max_burst=399, count_per_period=100),
    )
    result.scenario.policy = SimpleNamespace(layers=[layer])
    result.scenario.topology = SimpleNamespace(nodes=4)
    # the layer's capacity is max_burst + 1 = 400; its local fallback has a quarter of it
    # (local_share None: 1 / nodes), a GCRA of max_burst 100 (rounded), capacity 101
    local_cap = GcraSpec(max_burst=399, count_per_period=100).scaled(0.25).build().limit
    assert local_cap == 101
    result.data = SimpleNamespace(
        remaining=np.array([[200], [101], [50], [0], [0], [0]]),
        outcomes=np.array(
            [[ALLOWED], [LOCAL_ALLOWED], [LOCAL_ALLOWED], [ALLOWED], [ALLOWED], [ALLOWED]]
        ),
    )
    share = plots.remaining_share_frame(result)
    # bin 0: 200/400; bin 0.5: 101/101 and 50/101 (fallback); bins 1.0, 1.5: 0
    np.testing.assert_allclose(share["site"], [0.5, (1 + 50 / 101) / 2, 0, 0])


@pytest.mark.parametrize("name", scenarios.names())
def test_every_figure_of_every_builtin_is_readable(name: str) -> None:
    """On a real (small) run of each built-in: no warning, the legend right of the data, the
    count and share axes from zero, every positive latency on the axis."""
    import ratesim

    result = ratesim.simulate(scenarios.get(name, scale=0.1), seed=0)
    for plot, draw in plots.PLOTS.items():
        fig = Figure(figsize=(10, 4.5), layout="constrained")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ax = draw(result, fig.add_subplot())
            fig.draw_without_rendering()
        legend = ax.get_legend()
        assert legend is not None, (name, plot)
        assert legend.get_window_extent().x0 >= ax.get_window_extent().x1, (name, plot)
        if plot in ("timeline", "remaining", "nodes"):
            assert ax.get_ylim()[0] == 0, (name, plot)
        if plot == "latency" and ax.get_yscale() == "log":
            low, high = ax.get_ylim()
            for item in ax.get_lines():
                values = np.asarray(item.get_ydata(), dtype=float)
                values = values[np.isfinite(values) & (values > 0)]
                assert ((values > low) & (values < high)).all(), (name, item.get_label())
