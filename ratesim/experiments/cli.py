"""``ratesim sweep``: a sweep from the command line.

    ratesim sweep SCENARIO --set PATH=V1,V2,... [--set ...] [--replications R] [--seed N]
                  [--workers N | --dask ADDR] [--cache DIR] [--out DIR] [--scale S]
                  [--engine auto|event|fast] [--no-progress]

Values are read as YAML (``5``, ``0.5``, ``shadow``, ``true``; ``[...]`` or ``{...}`` for a list
or a mapping). It writes ``runs.parquet``, ``runs.csv`` (one row per run) and ``summary.csv``
(one row per point, see :func:`~ratesim.experiments.summarize`) to ``--out`` (default
``out/sweeps/<scenario name>``) and prints the summary. A bad path or value exits 2 with a
one-paragraph message, before anything runs.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

__all__ = ["add_sweep_parser", "parse_set"]

#: The summary columns printed (mean ± half-width of the 95% interval).
SHOWN = (
    "arrivals",
    "rejected_pct",
    "over_admitted_pct",
    "wrongly_rejected_pct",
    "legit_rejected_pct",
    "latency_p99_ms",
)


def _input_error(message: str) -> Exception:
    from ratesim.cli import InputError

    return InputError(message)


def parse_set(text: str) -> tuple[str, list[Any]]:
    """``"PATH=v1,v2"`` -> ``(PATH, [v1, v2])``, each value read as YAML."""
    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep or not path or not values.strip():
        raise _input_error(f"--set {text!r}: write it as PATH=V1,V2,... (e.g. topology.nodes=2,4)")
    try:
        parsed = yaml.safe_load(f"[{values}]")
    except yaml.YAMLError as exc:
        raise _input_error(f"--set {text!r}: the values are not readable: {exc}") from None
    return path, list(parsed)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def add_sweep_parser(sub: Any) -> None:
    """Register ``sweep`` on the ``ratesim`` command's subparsers."""
    from ratesim.cli import _non_negative_int, _positive_float

    p = sub.add_parser("sweep", help="run a scenario over a grid of parameter values")
    p.add_argument("scenario", metavar="SCENARIO", help="a scenario YAML file or a built-in name")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="PATH=V1,V2,...",
        help="a parameter path and its values (repeat: the grid is the product)",
    )
    p.add_argument("--replications", type=_positive_int, default=1, help="runs per point")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="root seed (default 0)")
    p.add_argument("--workers", type=_positive_int, help="local processes (default: all CPUs)")
    p.add_argument("--dask", metavar="ADDR", help="run on the Dask scheduler at ADDR")
    p.add_argument("--cache", metavar="DIR", help="keep finished runs in DIR; resume from it")
    p.add_argument("--out", metavar="DIR", help="output directory (default out/sweeps/<name>)")
    p.add_argument("--scale", type=_positive_float, help="size factor for a built-in scenario")
    p.add_argument("--engine", choices=("auto", "event", "fast"), default="auto")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(handler=_cmd_sweep)


def _load(args: argparse.Namespace) -> Any:
    from ratesim.cli import _LOAD_ERRORS, _bad_input_message, load_target

    try:
        scenario, _ = load_target(args.scenario, args.scale)
    except _LOAD_ERRORS as err:
        raise _input_error(_bad_input_message(err, f"'{args.scenario}'")) from err
    return scenario


def _cmd_sweep(args: argparse.Namespace) -> int:
    from . import summarize, sweep

    scenario = _load(args)
    grid: dict[str, list[Any]] = {}
    for text in args.sets:
        path, values = parse_set(text)
        if path in grid:
            raise _input_error(f"--set {path}: given twice; list all its values in one --set")
        grid[path] = values
    if args.dask and args.workers:
        raise _input_error("--workers and --dask exclude each other: the cluster has its workers")
    runner = "local"
    if args.dask:
        runner = args.dask if "://" in args.dask else f"dask://{args.dask}"
    try:
        df = sweep(
            scenario,
            grid=grid or None,
            replications=args.replications,
            seed=args.seed,
            runner=runner,
            workers=args.workers,
            cache=args.cache,
            progress=not args.no_progress,
            engine=args.engine,
        )
    except (ValueError, ImportError, OSError) as err:
        raise _input_error(f"the sweep was refused: {err}") from err
    summary = summarize(df)
    print(format_summary(summary, list(grid)))
    out = Path(args.out) if args.out else Path("out") / "sweeps" / str(scenario.name)
    try:
        out.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out / "runs.parquet", index=False)
        df.to_csv(out / "runs.csv", index=False)
        summary.to_csv(out / "summary.csv", index=False)
    except OSError as err:
        raise _input_error(f"cannot write the results to {out}: {err}") from err
    cached = df.attrs.get("cached", 0)
    print(
        f"\n{len(df)} runs ({cached} from the cache). "
        f"Wrote runs.parquet, runs.csv, summary.csv to {out}/"
    )
    return 0


def _cell(mean: float, low: float) -> str:
    if math.isnan(low):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {mean - low:.2g}"


def format_summary(summary: pd.DataFrame, params: list[str]) -> str:
    """The summary as text: the parameters and, per metric, mean ± 95% half-width."""
    table = pd.DataFrame({p: summary[p] for p in params})
    table["reps"] = summary["replications"]
    for m in SHOWN:
        if f"{m}_mean" in summary:
            table[m] = [
                _cell(a, b)
                for a, b in zip(summary[f"{m}_mean"], summary[f"{m}_ci95_low"], strict=True)
            ]
    return table.to_string(index=False)
