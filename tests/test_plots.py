"""Tests for ratesim.plots on small synthetic results shaped exactly like the Result contract (docs/guides/simulation.md)."""

from __future__ import annotations

import subprocess
import sys
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

from ratesim import plots  # noqa: E402

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


def make_requests(times_us: list[int], admitted: list[bool]) -> pd.DataFrame:
    n = len(times_us)
    return pd.DataFrame(
        {
            "time_us": np.asarray(times_us, dtype=np.int64),
            "node": np.zeros(n, dtype=np.int64),
            "user": np.arange(n, dtype=np.int64),
            "tier": pd.Categorical(["gold"] * n),
            "route": pd.Categorical(["/order"] * n),
            "abusive": np.zeros(n, dtype=bool),
            "cost": np.ones(n, dtype=np.int64),
            "admitted": np.asarray(admitted, dtype=bool),
            "rejected_by": [None if a else "global" for a in admitted],
            "latency_us": np.full(n, 700, dtype=np.int64),
        }
    )


# Six requests over bins [0, 0.5) [0.5, 1.0) [1.0, 1.5) [1.5, 2.0):
TIMES = [100_000, 600_000, 700_000, 1_100_000, 1_200_000, 1_600_000]
SYSTEM = [True, True, True, False, True, False]
ORACLE = [True, False, True, True, False, False]
# By hand: bin 0.5 has one over-admission (row 1); bin 1.0 has one wrong rejection (row 3) and
# one over-admission (row 4).
EXPECTED_OVER = [0, 1, 1, 0]
EXPECTED_WRONG = [0, 0, 1, 0]


def make_result(with_oracle: bool = True) -> FakeResult:
    scenario = SimpleNamespace(name="synthetic", interval_s=INTERVAL_S)
    oracle = None
    if with_oracle:
        oracle = FakeResult(scenario, make_timeseries(), make_requests(TIMES, ORACLE))
    return FakeResult(scenario, make_timeseries(), make_requests(TIMES, SYSTEM), oracle)


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


def labels(ax: Any) -> list[str]:
    return [str(line.get_label()) for line in ax.get_lines()]


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
    np.testing.assert_allclose(line(ax, "pool wait p99"), [0.0, 0.1, 5.0, 0.2])
    assert "ms" in ax.get_ylabel()


def test_latency_leaves_out_an_all_zero_pool_wait() -> None:
    result = make_result()
    result.timeseries["pool_wait_p99_us"] = 0
    assert labels(plots.latency(result)) == ["p50", "p99", "p99.9"]


def test_oracle_gap_matches_hand_counted_disagreements() -> None:
    result = make_result()
    gap = plots.oracle_gap_frame(result)
    assert gap["over_admitted"].tolist() == EXPECTED_OVER
    assert gap["wrongly_rejected"].tolist() == EXPECTED_WRONG
    ax = plots.oracle_gap(result)
    over = line(ax, "over-admitted (oracle rejects)")
    wrong = line(ax, "wrongly rejected (oracle admits)")
    np.testing.assert_allclose(over, np.array(EXPECTED_OVER) / INTERVAL_S)
    np.testing.assert_allclose(wrong, -np.array(EXPECTED_WRONG) / INTERVAL_S)


def test_oracle_gap_without_aligned_rows_uses_the_net_difference() -> None:
    result = make_result()
    result.oracle.requests = result.oracle.requests.iloc[:-1]
    result.oracle.timeseries["admitted"] = [12, 15, 10, 9]
    gap = plots.oracle_gap_frame(result)
    # system admitted [10, 15, 20, 9] minus oracle [12, 15, 10, 9] = [-2, 0, 10, 0]
    assert gap["over_admitted"].tolist() == [0, 0, 10, 0]
    assert gap["wrongly_rejected"].tolist() == [2, 0, 0, 0]


def test_oracle_gap_needs_an_oracle() -> None:
    with pytest.raises(ValueError, match="oracle"):
        plots.oracle_gap(make_result(with_oracle=False))


def test_remaining_has_one_step_line_per_layer() -> None:
    ax = plots.remaining(make_result())
    assert labels(ax) == list(LAYERS)
    np.testing.assert_allclose(line(ax, "global"), [1000, 900, 500, 700])
    # a gauge's last value in a bin is drawn at the end of that bin
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0.5, 1.0, 1.5, 2.0])
    assert "remaining" in ax.get_ylabel()


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
