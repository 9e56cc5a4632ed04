"""The ``ratesim`` command: run a scenario and write its results, or list the built-in scenarios.

    ratesim run [SCENARIO.yaml | built-in name] [--seed N] [--scale S] [--duration SECONDS]
                [--out DIR] [--no-progress] [--no-plots]
    ratesim scenarios
    ratesim import KIND FILE [-o POLICY.yaml]             (ratesim.importers.cli)
    ratesim validate POLICY [--suite SUITE.yaml] [--from KIND] [--redis URL] [--report DIR]
                                                         (ratesim.validate.cli)

Bad input (an unreadable or invalid scenario, an unknown built-in name, an impossible topology)
is reported as one paragraph on stderr with exit status 2, never as a traceback; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = [
    "EXIT_BAD_INPUT",
    "InputError",
    "check_writable",
    "default_out_dir",
    "format_summary",
    "main",
    "safe_dir_name",
    "write_outputs",
]

#: Exit status for bad input (the same status argparse uses for a bad command line).
EXIT_BAD_INPUT = 2

_SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")


class InputError(Exception):
    """Bad input from the user: reported as a message and exit status 2, not a traceback."""


# --------------------------------------------------------------------------- error messages


def _validation_message(err: Any, source: str) -> str:
    """One line per field from a pydantic ``ValidationError``: the field path and the reason."""
    parts = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item.get("loc", ())) or "(top level)"
        parts.append(f"field '{loc}': {item.get('msg', 'invalid')}")
    return f"invalid scenario {source}: " + "; ".join(parts)


def _bad_input_message(err: BaseException, source: str) -> str:
    """A readable one-paragraph message for an input error raised while loading or running."""
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        return _validation_message(err, source)
    if isinstance(err, FileNotFoundError):
        return f"scenario file {source} not found"
    if isinstance(err, OSError):
        return f"cannot read scenario {source}: {err.strerror or err}"
    text = str(err).strip() or type(err).__name__
    # The scenario loader usually names the file already; add it only when it is missing.
    return text if source.strip("'") in text else f"{source}: {text}"


#: Errors that mean "bad scenario" while loading or starting a run. ScenarioError and pydantic's
#: ValidationError are ValueErrors; OSError covers unreadable files.
_LOAD_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, yaml.YAMLError)


def _one_paragraph(message: str) -> str:
    """Join a multi-line message (a heading line ending in ':' and one line per problem)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return lines[0] + " " + "; ".join(lines[1:])
    return " ".join(lines)


def _report(message: str) -> int:
    """Print ``message`` as one wrapped paragraph on stderr; return the bad-input exit status."""
    paragraph = textwrap.fill(
        f"ratesim: error: {_one_paragraph(message)}",
        width=100,
        break_long_words=False,
        break_on_hyphens=False,
    )
    print(paragraph, file=sys.stderr)
    return EXIT_BAD_INPUT


# --------------------------------------------------------------------------- loading


def _is_path(target: str) -> bool:
    return target.lower().endswith(_SCENARIO_SUFFIXES) or "/" in target or Path(target).exists()


def _builtin_names() -> list[str]:
    from ratesim import scenarios

    return list(scenarios.names())


def load_target(target: str, scale: float | None) -> tuple[Any, str]:
    """The scenario named by ``target`` (a file path or a built-in name) and a label for messages.

    ``scale`` sizes a built-in, or a file's traffic (:mod:`ratesim.scenario_scale`). Raises
    :class:`InputError` for an unknown built-in name or a file ``--scale`` cannot apply to; the
    loader's own errors (ScenarioError, ValidationError, YAML errors, OSError) pass through.
    """
    if _is_path(target):
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(str(path))
        from ratesim.scenario import load_scenario

        loaded = load_scenario(path)
        if scale is not None:
            from ratesim.scenario_scale import scale_file_scenario

            try:
                loaded = scale_file_scenario(loaded, scale)
            except ValueError as err:
                raise InputError(f"--scale {scale:g} cannot apply to {target}: {err}") from err
        return loaded, f"'{target}'"
    names = _builtin_names()
    if target not in names:
        known = ", ".join(names) or "(none)"
        raise InputError(
            f"unknown scenario '{target}'. Built-in scenarios: {known}. "
            "Give one of these names or the path of a scenario YAML file."
        )
    from ratesim import scenarios

    scenario = scenarios.get(target) if scale is None else scenarios.get(target, scale=scale)
    return scenario, f"built-in scenario '{target}'"


def _with_duration(scenario: Any, duration_s: float | None) -> Any:
    """A validated copy of ``scenario`` with another ``duration_s`` (or the scenario itself)."""
    if duration_s is None:
        return scenario
    data = scenario.model_dump()
    data["duration_s"] = duration_s
    return type(scenario).model_validate(data)


def safe_dir_name(name: str) -> str:
    """A directory name made from a scenario's ``name``: ASCII letters, digits, ``.``, ``_`` and
    ``-`` only (every other run of characters becomes one ``_``), no leading or trailing dots or
    underscores, at most 100 characters; ``"scenario"`` when nothing is left. So ``../../x``
    becomes ``x`` and ``/etc/passwd`` becomes ``etc_passwd``: never a path out of ``out/``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    cleaned = cleaned[:100].strip("._")
    return cleaned or "scenario"


def default_out_dir(scenario_name: str) -> Path:
    """``out/<safe_dir_name(name)>``, checked to lie inside ``out/``."""
    base = Path("out")
    out = base / safe_dir_name(scenario_name)
    if base.resolve() not in out.resolve().parents:  # belt and braces: the name has no '/'
        raise InputError(f"scenario name {scenario_name!r} gives no directory inside {base}/")
    return out


def check_writable(out_dir: Path) -> None:
    """Raise :class:`InputError` unless ``out_dir`` is (or can be made) a writable directory.

    Checked before the run, so that a long simulation never ends in "cannot write". Nothing is
    left behind: a probe file (or, for a directory still to be made, a probe directory in its
    nearest existing parent) is created and removed at once.
    """
    target = out_dir
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if target.exists() and not target.is_dir():
        raise InputError(
            f"cannot write the results to {out_dir}: {target} exists and is not a directory"
        )
    try:
        if target == out_dir:
            fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".ratesim-probe-")
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(dir=target, prefix=".ratesim-probe-"))
    except OSError as err:
        raise InputError(
            f"cannot write the results to {out_dir}: {err.strerror or err} (checked before the "
            "run; give a writable directory with --out)"
        ) from err


def _check_size(scenario: Any, source: str) -> None:
    """Refuse a run too large to start (:func:`ratesim.budget.check_run_size`)."""
    from ratesim.budget import check_run_size

    try:
        check_run_size(scenario)
    except ValueError as err:
        raise InputError(f"the run was refused: {_bad_input_message(err, source)}") from err


def _simulate(
    scenario: Any,
    seed: int | None,
    progress: bool,
    engine: str = "auto",
    requests: str = "all",
    sinks: Any = (),
) -> Any:
    from ratesim import simulate

    return simulate(
        scenario, seed=seed, progress=progress, engine=engine, requests=requests, sinks=sinks
    )


def _streams_rows(scenario: Any, engine: str) -> bool:
    """Whether ``run --requests all`` writes requests.parquet as the run goes (a row sink):
    any run but the event engine's and those with clients that retry (rows out of order)."""
    clients = getattr(scenario, "clients", None)
    return engine != "event" and not (clients is not None and clients.any_retries)


# --------------------------------------------------------------------------- summary


def _ms(us: Any) -> str:
    value = float(us)
    return "n/a" if math.isnan(value) else f"{value / 1000.0:.3f} ms"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "n/a"


def _gap_totals(result: Any) -> tuple[int, int, int | None]:
    """(over-admitted, wrongly rejected, peak excess or None) for the whole run."""
    vs = getattr(result, "vs_oracle", None)
    if isinstance(vs, pd.DataFrame) and {"group", "over_admitted"} <= set(vs.columns):
        total = vs[vs["group"] == "total"]
        if len(total):
            row = total.iloc[0]
            peak = int(row["peak_excess"]) if "peak_excess" in vs.columns else None
            return int(row["over_admitted"]), int(row["wrongly_rejected"]), peak
    from ratesim.plots import oracle_gap_frame

    gap = oracle_gap_frame(result)
    return int(gap["over_admitted"].sum()), int(gap["wrongly_rejected"].sum()), None


def _oracle_lines(result: Any) -> list[str]:
    if getattr(result, "requests_kind", "all") != "all":  # the gap was folded, not the rows
        over, wrong, peak = _gap_totals(result)
        # over: the system admitted, the oracle not; wrong: the reverse
        oracle_admitted = int(result.totals["admitted"]) - over + wrong
    else:
        oracle = getattr(result, "oracle", None)
        if oracle is None:
            return ["Oracle gap: no oracle run"]
        over, wrong, peak = _gap_totals(result)
        oracle_admitted = int(np.asarray(oracle.requests["admitted"], dtype=bool).sum())
    line = f"Oracle gap: over-admitted {over:,}, wrongly rejected {wrong:,}"
    if peak is not None:
        line += f", peak excess {peak:,} in a 1 s window"
    lines = [line + f" (the oracle admitted {oracle_admitted:,})"]
    vs = getattr(result, "vs_oracle", None)
    if isinstance(vs, pd.DataFrame) and not vs.empty:
        lines += ["", "vs oracle:", vs.to_string(index="group" not in vs.columns)]
    return lines


def format_summary(result: Any, wall_s: float | None = None, scale: float | None = None) -> str:
    """The run's summary as plain text: per-layer table, totals, latency and the oracle gap."""
    totals = dict(getattr(result, "totals", None) or {})
    arrivals = int(totals.get("arrivals", len(result.requests)))
    admitted = int(totals.get("admitted", int(result.requests["admitted"].sum())))
    rejected = int(totals.get("rejected", arrivals - admitted))
    name = getattr(result.scenario, "name", "scenario")
    head = f"Scenario {name} (seed {getattr(result, 'seed', '?')})"
    duration = getattr(result.scenario, "duration_s", None)
    if scale is not None:
        head += f" at scale {scale:g}"
    if duration is not None:
        head += f": {duration:g} s simulated"
    if wall_s is not None:
        head += f" in {wall_s:.1f} s wall"
    engine = getattr(result, "engine", None)
    if isinstance(engine, str):
        head += f" ({engine} engine)"
    lines = [head, "", _summary_table(result).to_string(index=False), ""]
    lines.append(
        f"Totals: arrivals {arrivals:,}, admitted {admitted:,} ({_pct(admitted, arrivals)}), "
        f"rejected {rejected:,} ({_pct(rejected, arrivals)})"
    )
    lat = [totals.get(k, float("nan")) for k in ("latency_p50_us", "latency_p99_us")]
    lat.append(totals.get("latency_p999_us", float("nan")))
    lines.append(f"Decision latency: p50 {_ms(lat[0])}, p99 {_ms(lat[1])}, p99.9 {_ms(lat[2])}")
    if "held" in totals:  # a shaping layer (nginx without nodelay, Traefik, Sentinel pacing)
        lines.append(
            f"Held by shaping layers (in the latency): {totals['held']:,} requests "
            f"({_pct(totals['held'], arrivals)}), hold p99 {_ms(totals['held_p99_us'])}"
        )
    lines += _client_lines(totals)
    lines += _oracle_lines(result)
    from .results import Result

    if isinstance(result, Result):
        from .diagnostics import run_warnings

        lines += [f"Warning: {w}" for w in run_warnings(result)]
    return "\n".join(lines)


def _client_lines(totals: dict[str, Any]) -> list[str]:
    """With clients that retry: user requests, retries, goodput and what the users waited."""
    if not totals.get("retries"):
        return []
    users, goodput = int(totals["user_requests"]), int(totals["goodput"])
    lat = [totals[f"user_latency_{q}_us"] for q in ("p50", "p99", "p999")]
    return [
        f"Clients: {users:,} user requests, {int(totals['retries']):,} retries "
        f"({totals['attempts_per_request']:.2f} attempts per request), goodput {goodput:,} "
        f"({_pct(goodput, users)})",
        f"User latency (first attempt to final outcome): p50 {_ms(lat[0])}, p99 {_ms(lat[1])}, "
        f"p99.9 {_ms(lat[2])}",
    ]


#: The summary's store-breaker columns: left out of the printed table when no layer has one.
BREAKER_COLUMNS = ("breaker_short", "breaker_opens", "breaker_open_s")


def _summary_table(result: Any) -> Any:
    """The summary as printed: without the store-breaker columns when no layer has a breaker
    (they are all zero then; ``summary.csv`` keeps every column)."""
    summary = result.summary
    layers = getattr(getattr(getattr(result, "scenario", None), "policy", None), "layers", [])
    if any(getattr(layer, "store_breaker", None) is not None for layer in layers):
        return summary
    return summary.drop(columns=[c for c in BREAKER_COLUMNS if c in summary.columns])


# --------------------------------------------------------------------------- outputs


def _jsonable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_outputs(
    result: Any, out_dir: Path, plots: bool = True, *, requests_written: bool = False
) -> list[Path]:
    """Write requests.parquet, timeseries.parquet, summary.csv, totals.json, vs_oracle.csv and PNGs.

    Returns the paths written, in that order. A Result holding a sample of its rows writes
    them with their row numbers (column ``row``), one holding none writes no requests.parquet;
    the plots, drawn from every row, are then left out. ``requests_written``: every row is
    in requests.parquet already (written during the run by a ``ratesim.sinks.ParquetSink``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = getattr(result, "requests_kind", "all")
    written = [out_dir / "requests.parquet", out_dir / "timeseries.parquet"]
    if kind == "none" and not requests_written:
        written.pop(0)
    elif not requests_written:
        result.requests.to_parquet(written[0], index=kind == "sample")
    result.timeseries.to_parquet(written[-1])
    result.summary.to_csv(out_dir / "summary.csv", index=False)
    written.append(out_dir / "summary.csv")
    totals = getattr(result, "totals", None)
    if totals:
        path = out_dir / "totals.json"
        path.write_text(json.dumps({k: _jsonable(v) for k, v in totals.items()}, indent=2) + "\n")
        written.append(path)
    vs = getattr(result, "vs_oracle", None)
    if isinstance(vs, pd.DataFrame):
        vs.to_csv(out_dir / "vs_oracle.csv")
        written.append(out_dir / "vs_oracle.csv")
    if plots and kind == "all":
        from ratesim import plots as plotting

        written += plotting.save_all(result, out_dir)
    return written


# --------------------------------------------------------------------------- commands


def _status(what: str, shown: bool) -> None:
    """Say on stderr what the run is doing after the progress bar (when one is shown), so a
    long oracle or a slow disk is not a silent pause."""
    if shown:
        print(f"{what} ...", file=sys.stderr, flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    errors = _LOAD_ERRORS
    try:
        scenario, source = load_target(args.scenario, args.scale)
        scenario = _with_duration(scenario, args.duration)
    except errors as err:
        raise InputError(_bad_input_message(err, f"'{args.scenario}'")) from err
    _check_size(scenario, source)
    out_dir = Path(args.out) if args.out else default_out_dir(str(scenario.name))
    check_writable(out_dir)
    started = time.perf_counter()
    requests, sinks = args.requests, []
    if requests == "all" and _streams_rows(scenario, args.engine):
        # every row written as the run goes; the Result keeps them all when the run is small
        # (the plots need them), a sample above AUTO_ALL_ROWS: memory stays bounded
        from ratesim.sinks import ParquetSink

        out_dir.mkdir(parents=True, exist_ok=True)
        names = [layer.name for layer in scenario.policy.layers]
        requests, sinks = "auto", [ParquetSink(out_dir / "requests.parquet", names)]
    try:
        result = _simulate(scenario, args.seed, not args.no_progress, args.engine, requests, sinks)
    except errors as err:  # e.g. an impossible topology, refused before the run starts
        raise InputError(f"the run was refused: {_bad_input_message(err, source)}") from err
    wall_s = time.perf_counter() - started
    _status("running the oracle and comparing", not args.no_progress)
    print(format_summary(result, wall_s, 1.0 if args.scale is None else args.scale))
    _status(f"writing the results to {out_dir}/", not args.no_progress)
    try:
        written = write_outputs(
            result, out_dir, plots=not args.no_plots, requests_written=bool(sinks)
        )
    except OSError as err:
        raise InputError(f"cannot write the results to {out_dir}: {err}") from err
    print(f"\nWrote {len(written)} files to {out_dir}/: " + ", ".join(p.name for p in written))
    return 0


def _cmd_scenarios(_: argparse.Namespace) -> int:
    from ratesim import scenarios

    names = _builtin_names()
    width = max((len(n) for n in names), default=0)
    for name in names:
        description = str(getattr(scenarios.get(name), "description", "") or "").strip()
        first = description.splitlines()[0] if description else ""
        print(f"{name:<{width}}  {first}".rstrip())
    return 0


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ratesim`` command."""
    parser = argparse.ArgumentParser(
        prog="ratesim", description="Simulate API-gateway rate limiting."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a scenario, print its summary and write its results")
    run.add_argument("scenario", metavar="SCENARIO", help="a scenario YAML file or a built-in name")
    run.add_argument("--seed", type=_non_negative_int, help="random seed (default: the scenario's)")
    run.add_argument(
        "--scale",
        type=_positive_float,
        help="size factor (default 1): a built-in's sizes, or a file's traffic rates and users",
    )
    run.add_argument(
        "--duration", type=_positive_float, metavar="SECONDS", help="override the simulated time"
    )
    run.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default out/<scenario name, sanitised>); checked writable "
        "before the run",
    )
    run.add_argument(
        "--engine",
        choices=("auto", "event", "fast"),
        default="auto",
        help="auto (default): the compiled fast engine when it models the scenario, else the "
        "SimPy event engine; both give the same run",
    )
    run.add_argument(
        "--requests",
        choices=("all", "sample", "none", "auto"),
        default="all",
        help="the per-request rows kept and written to requests.parquet: all (default; "
        "written as the run goes on the fast engine, the run's memory bounded; above "
        "1,000,000 rows only a sample stays in memory and the plots are left out), a "
        "seeded sample of 100,000 (with their row numbers), none, or auto (all up to 1,000,000 "
        "rows, else a sample); the time series, summary, totals and oracle gap are exact "
        "either way; the plots need every row",
    )
    run.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    run.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    run.set_defaults(handler=_cmd_run)
    listing = sub.add_parser("scenarios", help="list the built-in scenarios")
    listing.set_defaults(handler=_cmd_scenarios)
    from .importers.cli import register as register_import  # ratesim import (issue 12)

    register_import(sub)
    from .validate.cli import register as register_validate  # ratesim validate (issue 12)

    register_validate(sub)
    from ratesim.experiments.cli import add_sweep_parser  # ratesim sweep: issue 11

    add_sweep_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ratesim`` command; returns the exit status (0 ok, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its usage message already
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_BAD_INPUT
    try:
        return int(args.handler(args))
    except InputError as err:
        return _report(str(err))


if __name__ == "__main__":
    raise SystemExit(main())
