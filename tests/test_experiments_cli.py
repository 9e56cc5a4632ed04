"""``ratesim sweep`` and the experiment plots, on the tiny two-layer scenario of
``test_experiments.py`` (event engine, one process)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from matplotlib.axes import Axes
from test_experiments import GCRA_PATH, outcome_columns, two_layers

from ratesim.cli import main
from ratesim.experiments import (
    coupling_map,
    degradation_order,
    first_trip,
    isolate_layers,
    summarize,
    sweep,
)

matplotlib.use("Agg")


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "two-layers.yaml"
    two_layers(duration_s=1.5).to_yaml(path)
    return path


def test_sweep_command_writes_the_runs_and_the_summary(
    scenario_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["sweep", str(scenario_file), "--set", f"{GCRA_PATH}=60,300"]
    argv += ["--set", "traffic.scale=1,2.5", "--replications", "2", "--seed", "3"]
    argv += ["--workers", "1", "--engine", "event", "--no-progress", "--out", str(out)]
    assert main([*argv, "--cache", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    runs = pd.read_parquet(out / "runs.parquet")
    expected = sweep(
        two_layers(duration_s=1.5),
        grid={GCRA_PATH: [60, 300], "traffic.scale": [1, 2.5]},
        replications=2,
        seed=3,
        runner="serial",
        engine="event",
        progress=False,
    )
    cols = outcome_columns(expected)
    pd.testing.assert_frame_equal(runs[cols], expected[cols])
    assert len(pd.read_csv(out / "runs.csv")) == 8
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and "rejected_pct_ci95_low" in summary
    # the printed table has one line per point, with the parameters and the mean ± half-width
    lines = printed.splitlines()
    assert GCRA_PATH in lines[0] and "rejected_pct" in lines[0]
    assert sum("±" in line for line in lines) == 4
    assert "8 runs (0 from the cache)" in printed
    # again, from the cache
    assert main([*argv, "--cache", str(tmp_path / "cache")]) == 0
    assert "8 runs (8 from the cache)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--set", "policy.layers[nope].mode=shadow"], "no entry named 'nope'"),
        (["--set", f"{GCRA_PATH}=100,0"], f"'{GCRA_PATH}' = 0"),
        (["--set", "topology.nodes"], "write it as PATH=V1,V2"),
        (["--set", "network.pool_size=1", "--set", "network.pool_size=2"], "given twice"),
        (["--workers", "2", "--dask", "127.0.0.1:8786"], "exclude each other"),
    ],
)
def test_sweep_command_refuses_bad_input_with_exit_2(
    scenario_file: Path, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", str(scenario_file), "--engine", "event", "--no-progress", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in " ".join(err.split())  # the message is wrapped into one paragraph
    assert err.startswith("ratesim: error:") and "Traceback" not in err


def test_sweep_command_refuses_an_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "no-such-scenario", "--set", "topology.nodes=2"]) == 2
    assert "unknown scenario 'no-such-scenario'" in capsys.readouterr().err


# --- plots --------------------------------------------------------------------------------------


def _save(ax: Axes, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path, dpi=80)
    assert path.stat().st_size > 5_000
    return path


def test_every_experiment_plot_returns_its_axes(tmp_path: Path) -> None:
    from ratesim import simulate
    from ratesim.experiments import plots

    kw = {"runner": "serial", "engine": "event", "progress": False}
    df = sweep(
        two_layers(duration_s=1.5),
        grid={GCRA_PATH: [60, 120, 300], "traffic.scale": [1.0, 2.5]},
        replications=2,
        **kw,
    )
    ax = plots.metric(summarize(df), x=GCRA_PATH, y="rejected_pct", hue="traffic.scale")
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # a line and a band per hue value
    assert ax.get_xlabel() == GCRA_PATH
    _save(ax, tmp_path, "metric")

    ft = first_trip(simulate(two_layers(r_global=120, rate=250.0), seed=4, engine="event"))
    ax = plots.first_trip(ft)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(ft["layer"])
    _save(ax, tmp_path, "first_trip")

    iso = isolate_layers(two_layers(r_global=120, rate=250.0), **kw)
    _save(plots.isolate_layers(iso), tmp_path, "isolate")

    order = degradation_order(two_layers(150), load_factors=[1.0, 1.5, 2.0, 2.5, 3.0], **kw)
    ax = plots.degradation_order(order)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["node_bucket - out of order", "site_gcra - out of order"]
    _save(ax, tmp_path, "degradation")

    cm = coupling_map(
        two_layers(duration_s=1.5),
        x=GCRA_PATH,
        y="traffic.rate_per_s",
        x_values=[120, 160, 240, 280],
        y_values=[80.0, 160.0, 240.0, 320.0],
        **kw,
    )
    ax = plots.coupling_map(cm)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "site_gcra binds first" in legend and "node_bucket binds first" in legend
    assert "site_gcra never engages" in legend
    _save(ax, tmp_path, "coupling")
    with pytest.raises(ValueError, match="coupling_map"):
        plots.coupling_map(pd.DataFrame({"a": [1]}))
