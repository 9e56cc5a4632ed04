"""Mutated scenarios and traces for the input fuzzers (``tests/test_fuzz.py`` and the longer
``benchmarks/fuzz_inputs.py``), and the rule every case must follow.

A case starts from one of a few tiny valid scenarios (fractions of a second of traffic, so a
clean run is fast) and applies one to three mutations: a deleted field, a retyped field, an
extreme number, odd Unicode, deep nesting, an unknown field, and on the YAML text a duplicated
line, an alias bomb, a truncation or stray characters; a trace scenario also gets its CSV
mutated (huge, float, negative, missing or unsorted times, ragged rows, bad bytes). Choices come
from a :class:`Chooser`: hypothesis' ``data.draw`` in the test suite, a seeded ``random.Random``
in the script, so both explore the same space deterministically.

:func:`run_case` runs a case through ``load_scenario`` and ``ratesim run``; the outcome must be a
clean run (exit 0) or exit 2 with a one-paragraph ``ratesim: error: ...`` message. Anything
else (an exception out of either, another exit status, a message with a traceback or several
paragraphs) is a failure; a case over its time bound is a hang.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import random
import signal
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

#: Memory budget for fuzzed runs: small enough that an accepted run stays a fraction of a
#: second or two (the interpreter's own 300 MB count towards it).
FUZZ_MEMORY_BUDGET = "360M"

LAYERS: list[dict[str, Any]] = [
    {"name": "node_tb", "algorithm": {"kind": "token_bucket", "rate": 50.0, "burst": 5}},
    {
        "name": "user_gcra",
        "algorithm": {"kind": "gcra", "max_burst": 3, "count_per_period": 10},
        "scope": "global",
        "key": "{tier}:{user}",
        "tiers": {"gold": {"max_burst": 9}},
        "timeout_ms": 50.0,
        "failure_mode": "local",
    },
    {
        "name": "log",
        "algorithm": {"kind": "sliding_log", "limit": 20, "window_s": 0.5},
        "scope": "global",
        "time_source": "redis",
        "routes": ["/a"],
    },
    {"name": "fw", "algorithm": {"kind": "fixed_window", "limit": 30, "window_s": 0.1}},
    {"name": "swc", "algorithm": {"kind": "sliding_counter", "limit": 30, "window_s": 0.1}},
    {
        "name": "ring",
        "algorithm": {"kind": "bucketed_window", "limit": 25, "window_s": 0.1, "buckets": 4},
    },
    {
        "name": "dbuf",
        "algorithm": {
            "kind": "double_buffered",
            "limit": 25,
            "window_s": 0.1,
            "buckets": 4,
            "swap_interval_s": 0.05,
        },
    },
]

BACKEND_LAYERS: list[dict[str, Any]] = [
    {"name": "conc", "algorithm": {"kind": "concurrency", "max_in_flight": 4, "max_wait_s": 0.01}},
    {
        "name": "breaker",
        "algorithm": {"kind": "circuit_breaker", "threshold": 0.5, "max_rt_s": 0.005},
    },
]


def seeds() -> list[dict[str, Any]]:
    """Tiny valid scenarios: every traffic kind, every algorithm, faults, clocks, a trace."""
    population = {
        "users": 20,
        "tiers": {"gold": 0.3, "silver": 0.7},
        "routes": {"/a": 0.5, "/b": 0.5},
        "route_cost": {"/b": 2},
    }
    common: dict[str, Any] = {"name": "fuzz", "duration_s": 0.2, "seed": 1, "interval_s": 0.05}
    return [
        {
            **common,
            "traffic": {"kind": "poisson", "rate_per_s": 200.0},
            "population": population,
            "policy": {"layers": copy.deepcopy(LAYERS[:3])},
            "topology": {"nodes": 2, "clocks": {"offset_ms": 1.5, "drift_ppm": 20.0}},
            "network": {
                "latency": {"kind": "lognormal", "median_ms": 0.3, "sigma": 0.5},
                "spikes": [{"start_s": 0.05, "end_s": 0.1, "factor": 4.0, "add_ms": 1.0}],
                "partitions": [{"start_s": 0.1, "end_s": 0.12, "nodes": [1]}],
            },
            "redis": {
                "service_time": {"kind": "uniform", "low_ms": 0.01, "high_ms": 0.05},
                "outages": [{"start_s": 0.12, "end_s": 0.15, "kind": "blackhole"}],
                "failovers": [{"at_s": 0.16, "lost_writes_ms": 5.0, "clock_step_ms": 2.0}],
                "clock": {"offset_ms": -3.0, "steps": [{"at_s": 0.1, "by_ms": -1.0}]},
            },
        },
        {
            **common,
            "traffic": {
                "kind": "flash_crowd",
                "base_rate_per_s": 100.0,
                "peak_factor": 3.0,
                "start_s": 0.05,
                "ramp_s": 0.02,
                "plateau_s": 0.05,
                "decay_s": 0.02,
            },
            "policy": {"layers": copy.deepcopy(LAYERS[3:])},
            "redis": None,
        },
        {
            **common,
            "traffic": {
                "kind": "piecewise",
                "segments": [
                    {"until_s": 0.1, "rate_per_s": 100.0},
                    {"until_s": 0.2, "rate_per_s": 300.0},
                ],
            },
            "policy": {"layers": copy.deepcopy(BACKEND_LAYERS)},
            "backend": {
                "servers": 2,
                "service_time": {"kind": "normal", "mean_ms": 2.0, "std_ms": 1.0},
                "load_factor": 0.5,
            },
            "redis": None,
        },
        {
            **common,
            "traffic": {
                "kind": "mmpp",
                "rates_per_s": [50.0, 400.0],
                "mean_sojourn_s": [0.05, 0.02],
            },
            "policy": {"layers": copy.deepcopy([LAYERS[1], LAYERS[4]])},
            "population": population,
        },
        {
            **common,
            "traffic": {
                "kind": "diurnal",
                "mean_rate_per_s": 150.0,
                "amplitude": 0.5,
                "period_s": 0.1,
            },
            "policy": {"layers": copy.deepcopy([LAYERS[0], LAYERS[2]])},
            "network": {
                "latency": {
                    "kind": "mixture",
                    "components": [
                        {"weight": 0.9, "latency": {"kind": "constant", "ms": 0.2}},
                        {"weight": 0.1, "latency": {"kind": "empirical", "samples_ms": [1, 2]}},
                    ],
                }
            },
            "population": population,
        },
        {
            **common,
            "traffic": {"kind": "trace", "path": "trace.csv", "jitter": 0.001, "speedup": 2.0},
            "policy": {"layers": copy.deepcopy([LAYERS[0], LAYERS[5]])},
            "redis": None,
        },
    ]


TRACE = "time,user,route,tier,cost\n0,a,/a,gold,1\n0.01,b,/b,silver,2\n0.03,a,/a,gold,1\n0.2,c,/a,silver,1\n"

EXTREME_NUMBERS: list[Any] = [
    math.inf,
    -math.inf,
    math.nan,
    1e308,
    -1e308,
    2**63,
    2**64,
    -(2**63),
    2**53 + 1,
    10**30,
    0,
    -1,
    1e-320,
    5e-7,
    1e12,
    True,
]
ODD_TEXT: list[str] = [
    "",
    " ",
    "../../x",
    "/etc/passwd",
    "日本語",
    "\u202emirror",
    "a\x00b",
    "x" * 5000,
    "{user}{tier}",
    "{bogus}",
    "*",
    ":",
    "\ud800",
    "🙂",
    "\n\n",
]
RETYPES: list[Any] = [None, "text", [], {}, [1, 2], {"a": 1}, True, 1.5, -7, "1e3"]


class Chooser(Protocol):
    """Where a case's choices come from."""

    def integer(self, low: int, high: int) -> int: ...

    def pick(self, options: Sequence[Any]) -> Any: ...


class RandomChooser:
    """Choices from a seeded ``random.Random`` (the script)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (dict keys and list indices), 12 levels deep."""
    if len(prefix) >= 12:
        return
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def _mutate_data(data: dict[str, Any], c: Chooser) -> None:
    paths = list(_paths(data))
    path = c.pick(paths)
    parent, last = _parent(data, path), path[-1]
    value = parent[last]
    # "scale" keeps most numbers in their domain, so that many cases still run, near the edges.
    op = c.pick(
        ["scale", "scale", "scale", "delete", "retype", "extreme", "text", "nest", "unknown"]
    )
    if op == "scale":
        numbers = [p for p in paths if _is_number(_parent(data, p)[p[-1]])]
        if numbers:
            path = c.pick(numbers)
            parent, last = _parent(data, path), path[-1]
            parent[last] = parent[last] * c.pick([0, 0.5, 2, 10, 1000, 1e6, -1])
    elif op == "delete":
        del parent[last]
    elif op == "retype":
        parent[last] = c.pick(RETYPES)
    elif op == "extreme":
        parent[last] = c.pick(EXTREME_NUMBERS)
    elif op == "text":
        target = c.pick(["name", "path"])
        if target == "name" or not isinstance(value, str):
            data["name"] = c.pick(ODD_TEXT)
        else:
            parent[last] = c.pick(ODD_TEXT)
    elif op == "nest":
        depth = c.pick([2, 10, 70, 150])
        for _ in range(depth):
            value = [value] if c.integer(0, 1) else {"k": value}
        parent[last] = value
    elif isinstance(value, dict):
        value[c.pick(["zzz", "kind", "Name"])] = 1
    else:
        data[c.pick(["zzz", "Name"])] = 1


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _alias_bomb(levels: int, width: int) -> str:
    lines = ["x0: &a0 [" + ", ".join(["v"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _mutate_text(text: str, c: Chooser) -> str:
    lines = text.splitlines(keepends=True)
    op = c.pick(["duplicate", "alias", "truncate", "stray", "deep", *["none"] * 6])
    if op == "duplicate" and lines:
        i = c.integer(0, len(lines) - 1)
        lines.insert(i + 1, lines[i])
        return "".join(lines)
    if op == "alias":
        return text + _alias_bomb(c.integer(1, 9), c.integer(1, 12))
    if op == "deep":
        depth = c.pick([65, 300, 1500, 5000])
        opener, closer = c.pick([("[", "]"), ("{a: ", "}")])
        return text + "zz: " + opener * depth + "1" + closer * depth + "\n"
    if op == "truncate":
        return text[: c.integer(0, len(text))]
    if op == "stray":
        i = c.integer(0, len(text))
        return (
            text[:i]
            + c.pick(["\t", ": ", "- ", "&a ", "*a ", "!!python/object ", "{", "%"])
            + text[i:]
        )
    return text


def _mutate_trace(c: Chooser) -> bytes:
    rows = TRACE.splitlines()
    op = c.pick(["huge", "float", "negative", "missing", "unsorted", "ragged", "bytes", "header"])
    i = c.integer(1, len(rows) - 1)
    fields = rows[i].split(",")
    if op == "huge":
        fields[0] = c.pick(["18446744073709", "1e300", "9223372036854775807", "-1e20"])
    elif op == "float":
        fields[0] = c.pick(["0.0000005", "1.5e-3", "nan", "inf", "0x10"])
    elif op == "negative":
        fields[0] = "-5"
    elif op == "missing":
        fields[c.integer(0, len(fields) - 1)] = ""
    elif op == "unsorted":
        rows[1], rows[-1] = rows[-1], rows[1]
    elif op == "ragged":
        fields = fields[:-1] if c.integer(0, 1) else [*fields, "extra"]
    elif op == "header":
        rows[0] = c.pick(["time,user,user", "when,who", "time", ""])
    rows[i] = ",".join(fields)
    data = ("\n".join(rows) + "\n").encode()
    if op == "bytes":
        data = data[:20] + b"\xff\xfe\x00" + data[20:]
    return data


@dataclass
class Case:
    """A scenario's YAML text and, for a trace scenario, the trace file's bytes."""

    text: str
    trace: bytes | None
    engine: str


def make_case(c: Chooser) -> Case:
    """One mutated case (see the module docstring)."""
    data = copy.deepcopy(c.pick(seeds()))
    uses_trace = data["traffic"].get("kind") == "trace"
    for _ in range(c.integer(0, 2)):
        _mutate_data(data, c)
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**6)
    except (yaml.YAMLError, RecursionError, ValueError):
        text = "name: fuzz\nduration_s: 0.1\ntraffic: {kind: poisson, rate_per_s: 10}\n"
    text = _mutate_text(text, c)
    trace = _mutate_trace(c) if uses_trace and c.integer(0, 1) else TRACE.encode()
    return Case(text, trace if uses_trace else None, c.pick(["auto", "event", "auto"]))


@dataclass
class Tally:
    """Outcomes of a fuzz run."""

    cases: int = 0
    clean: int = 0
    exit2: int = 0
    tracebacks: int = 0
    hangs: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, outcome: str, detail: str) -> None:
        self.cases += 1
        if outcome == "clean":
            self.clean += 1
        elif outcome == "exit2":
            self.exit2 += 1
        elif outcome == "hang":
            self.hangs += 1
            self.failures.append(detail)
        else:
            self.tracebacks += 1
            self.failures.append(detail)


class _Hang(BaseException):
    """Raised by the alarm: a BaseException so no ``except Exception`` swallows it."""


@contextlib.contextmanager
def _time_bound(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer = signal.alarm(seconds)  # an enclosing alarm (pytest-timeout's) is re-armed after
    started = time.monotonic()
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.alarm(max(1, outer - int(time.monotonic() - started)))


def one_paragraph(err: str) -> bool:
    """What ``ratesim run`` must print for bad input: one ``ratesim: error:`` paragraph."""
    text = err.strip()
    return text.startswith("ratesim: error: ") and "\n\n" not in text and "Traceback" not in text


def run_case(case: Case, workdir: Path, time_bound_s: int = 30) -> tuple[str, str]:
    """``(outcome, detail)``: outcome is ``clean``, ``exit2``, ``traceback`` or ``hang``."""
    from ratesim import cli
    from ratesim.scenario import ScenarioError, load_scenario

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "case.yaml"
    path.write_text(case.text, encoding="utf-8", errors="surrogatepass")
    if case.trace is not None:
        (workdir / "trace.csv").write_bytes(case.trace)
    detail = case.text[:300]
    err = io.StringIO()
    # the fuzz's own memory budget, for this case only: later tests see the machine's
    saved = os.environ.get("RATESIM_MAX_MEMORY")
    os.environ["RATESIM_MAX_MEMORY"] = FUZZ_MEMORY_BUDGET
    try:
        with _time_bound(time_bound_s), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # an overflow in numpy is a bug
            with contextlib.suppress(ScenarioError):
                load_scenario(path)
            argv = ["run", str(path), "--out", str(workdir / "out"), "--no-progress"]
            argv += ["--no-plots", "--engine", case.engine]
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(argv)
    except _Hang:
        return "hang", f"over {time_bound_s} s: {detail}"
    except BaseException as exc:  # noqa: BLE001 - anything escaping is what we count
        return "traceback", f"{type(exc).__name__}: {exc!s:.300} in case {detail}"
    finally:
        if saved is None:
            os.environ.pop("RATESIM_MAX_MEMORY", None)
        else:
            os.environ["RATESIM_MAX_MEMORY"] = saved
    if code == 0:
        return "clean", ""
    if code == 2 and one_paragraph(err.getvalue()):
        return "exit2", ""
    return "traceback", f"exit {code}, stderr {err.getvalue()[:300]!r} in case {detail}"
