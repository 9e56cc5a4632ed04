"""The seed's connection-pool change on the exchange-surge scenario, with replications.

The article raised the Redis pool from 80 to 200 connections per node and cut the maximum wait
for a connection from 2000 to 500 ms, and reports the P99 pool-acquire time falling from
1860 ms to 320 ms under the surge. This script sweeps the built-in ``exchange-surge`` scenario
over the settings before and after (and, by default, the two one-change-at-a-time variants)
with ``ratesim.experiments.sweep``: every setting sees the same arrivals in each replication
(common random numbers), and each figure comes with its 95% interval over the replications.
It prints one row per setting (mean ± half-width of the interval):

* ``pool_wait_p99_ms`` - p99 of the time a request waited for a connection (all requests);
* ``worst_bin_pool_wait_p99_ms`` - the largest per-bin p99 (``timeseries.pool_wait_p99_us``);
* ``latency_p99_ms`` - p99 decision latency (pool wait included);
* ``rejected_pct`` and ``fail_open`` - rejections, and decisions a layer's failure mode took
  (a pool wait that times out triggers the layer's failure mode);
* ``over_admitted`` - requests admitted that the oracle rejects (fail-open lets them through).

It writes ``pool_sizing_runs.csv`` (one row per run), ``pool_sizing.csv`` (the summary) and a
figure (pool-wait p99, failed-open and over-admitted requests per setting, with intervals)
into ``--out`` (default ``out/experiments``).

    .venv/bin/python experiments/pool_sizing.py [--scale 2] [--replications 3] [--seed N]
                                                [--workers N] [--duration SECONDS]
                                                [--settings 80:2000,200:500] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ratesim import scenarios
from ratesim.experiments import summarize, sweep

#: (pool size, maximum wait in ms): the seed's before, the two single changes, the seed's after.
DEFAULT_SETTINGS = ((80, 2000.0), (200, 2000.0), (80, 500.0), (200, 500.0))
SIZE, WAIT = "network.pool_size", "network.pool_max_wait_ms"
SHOWN = (
    "pool_wait_p99_ms",
    "worst_bin_pool_wait_p99_ms",
    "latency_p99_ms",
    "rejected_pct",
    "fail_open",
    "over_admitted",
)


def worst_bin_pool_wait(result: Any) -> dict[str, float]:
    """The largest per-bin p99 pool wait (ms) and the failed-open decisions of every layer."""
    fail_open = int(result.summary["fail_open"].sum())
    worst = float(result.timeseries["pool_wait_p99_us"].max()) / 1000
    return {"worst_bin_pool_wait_p99_ms": worst, "fail_open": fail_open}


def label(size: Any, wait: Any) -> str:
    return f"pool {int(size)}, max wait {float(wait):g} ms"


def table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per setting: mean ± half-width of the 95% interval of each shown metric."""
    rows = []
    for _, s in summary.iterrows():
        row: dict[str, Any] = {"pool_size": int(s[SIZE]), "pool_max_wait_ms": s[WAIT]}
        for m in SHOWN:
            half = s[f"{m}_mean"] - s[f"{m}_ci95_low"]
            shown = f"{s[f'{m}_mean']:,.1f}"
            row[m] = shown if np.isnan(half) else f"{shown} ± {half:,.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def figure(summary: pd.DataFrame) -> Figure:
    """Pool-wait p99 (left) and failed-open / over-admitted requests (right) per setting."""
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    labels = [label(a, b) for a, b in zip(summary[SIZE], summary[WAIT], strict=True)]
    x = np.arange(len(labels))

    def bars(ax: Any, metric: str, offset: float, text: str, width: float = 0.4) -> None:
        mean = summary[f"{metric}_mean"].to_numpy(dtype=float)
        err = np.nan_to_num(mean - summary[f"{metric}_ci95_low"].to_numpy(dtype=float))
        # counts and waits are never negative: the interval is cut at zero, not drawn below it
        below = np.minimum(err, mean)
        ax.bar(x + offset, mean, width=width, yerr=[below, err], capsize=4, label=text)

    bars(left, "pool_wait_p99_ms", -0.2, "all requests")
    bars(left, "worst_bin_pool_wait_p99_ms", 0.2, "worst 1 s bin")
    left.set_ylabel("pool-acquire wait p99 (ms)")
    left.set_title("Connection-pool wait p99 (mean, 95% interval over replications)")
    bars(right, "fail_open", -0.2, "failed open")
    bars(right, "over_admitted", 0.2, "over-admitted vs the oracle")
    right.set_ylabel("requests")
    right.set_title("Failure-mode decisions and over-admission")
    for ax in (left, right):
        ax.set_xticks(x, labels, rotation=15, ha="right", fontsize="small")
        ax.set_ylim(bottom=0)
        ax.margins(y=0.15)
        # above the axes, not on the bars
        ax.legend(
            fontsize="small", loc="lower left", bbox_to_anchor=(0, 1.08), ncols=2, borderaxespad=0
        )
        ax.grid(True, axis="y", alpha=0.3)
    return fig


def _parse_settings(text: str) -> list[tuple[int, float]]:
    settings = []
    for item in text.split(","):
        size, _, wait = item.partition(":")
        try:
            settings.append((int(size), float(wait)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"settings must look like 80:2000,200:500 (size:max_wait_ms), got {item!r}"
            ) from None
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # At scale 1 the single Redis keeps up and no request ever waits long for a connection; from
    # scale 2 the surge saturates it, and the pool settings start to matter.
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="exchange-surge scale (default 2; 0.05 with --small)",
    )
    parser.add_argument(
        "--replications",
        type=int,
        default=None,
        help="runs per setting (default 3; 2 with --small)",
    )
    parser.add_argument("--seed", type=int, default=0, help="root seed of the replications")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local processes (default: one per CPU; --small runs serially)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="simulated seconds (default: the scenario's 30)",
    )
    parser.add_argument(
        "--settings",
        type=_parse_settings,
        default=list(DEFAULT_SETTINGS),
        help="pool settings as size:max_wait_ms pairs (default 80:2000,200:2000,80:500,200:500)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/experiments"),
        help="directory for the tables and the figure (default out/experiments)",
    )
    parser.add_argument(
        "--small", action="store_true", help="a small, fast configuration (what the tests run)"
    )
    args = parser.parse_args(argv)
    scale = args.scale or (0.05 if args.small else 2.0)
    replications = args.replications or (2 if args.small else 3)

    base = scenarios.get("exchange-surge", scale=scale)
    if args.duration is not None:
        base = base.model_copy(update={"duration_s": args.duration})
    runs = sweep(
        base,
        samples=[{SIZE: size, WAIT: wait} for size, wait in args.settings],
        replications=replications,
        seed=args.seed,
        metrics=[worst_bin_pool_wait],
        workers=args.workers,
        runner="serial" if args.small else "local",
        progress=not args.small,
    )
    summary = summarize(runs)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table(summary).to_string(index=False))
    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "pool_sizing_runs.csv", index=False)
    summary.to_csv(args.out / "pool_sizing.csv", index=False)
    for frame, name in ((runs, "pool_sizing_runs"), (summary, "pool_sizing")):
        plain = frame.copy()
        plain.attrs = {}
        plain.to_parquet(args.out / f"{name}.parquet")
    figure(summary).savefig(args.out / "pool_sizing.png", dpi=110)
    print(
        f"\nwrote pool_sizing_runs.{{csv,parquet}}, pool_sizing.{{csv,parquet}} and "
        f"pool_sizing.png to {args.out}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
