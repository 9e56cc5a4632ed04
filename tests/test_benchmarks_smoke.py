"""Every script in ``benchmarks/`` runs at a tiny size and prints its figures.

No other test runs the benchmarks, so one could break silently (``bench_scale.py`` once did).
Each runs here as its own process, the way a user runs it, with small-size arguments; the
ones that need Redis start their own ``redis-server`` on a free port. All are started at once
(a module fixture) and each test waits for its own, so the file costs about as long as the
slowest script, not the sum. Only the exit code and the presence of each figure's line are
checked: the figures themselves are timings on a shared machine and never asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
#: Seconds a script may take before the test fails (generous: the machine is shared).
TIMEOUT_S = 600

#: script -> (tiny-size arguments, lines (substrings) its output must hold)
SMOKE: dict[str, tuple[list[str], list[str]]] = {
    "bench_algorithms.py": (
        ["--requests", "500", "--keys", "20", "--repeats", "1"],
        ["bare loop (dict + int compare)", "GCRA ", "SlidingWindowLog", "CircuitBreaker"],
    ),
    "bench_chunks.py": (
        ["--scale", "0.01"],
        ["chunks  exchange-surge x0.01:", "whole   exchange-surge x0.01:", "peak RSS"],
    ),
    "bench_experiments.py": (
        ["--points", "2", "--replications", "1", "--workers", "2", "--scale", "0.005"],
        [
            "2 points x 1 replications = 2 runs",
            "(a) bare simulate loop:",
            "(d) sweep, local",
            "overhead of the experiment layer per run:",
            "serial and local tables identical (wall_s aside): True",
        ],
    ),
    "bench_lua_cpu.py": (
        ["--rounds", "1", "--chunk", "40", "--chunks", "1", "--warmup", "100"],
        [
            "its replies equal the current ones byte for byte",
            "FCALL: trivial GCRA",
            "EVALSHA: trivial GCRA",
            "gcra ",
            "target <= 1.5x:",
            "double_buffered_window",
        ],
    ),
    "bench_oracle_stream.py": (
        ["--repeat", "1", "--scales", "0.01"],
        [
            "exchange-surge scale 0.01:",
            "oracle + gap, streamed",
            "RowSample",
            "ParquetSink",
            "streamed / whole:",
        ],
    ),
    "bench_redis.py": (
        ["--n", "1000", "--batch", "100", "--rounds", "1"],
        [
            "RedisStore.acquire, sequential",
            "RedisStore.acquire_many, EVALSHA",
            "RedisStore.acquire_many, FCALL",
            "redis-benchmark -P 16 -c 50",
            "server CPU per call, median us:",
        ],
    ),
    "bench_redis_faults.py": (
        [],
        ["black hole", "SIGSTOP, live connection", "BUSY (long script elsewhere)"],
    ),
    "bench_scale.py": (
        ["--smoke"],
        [
            "exchange-surge scale 0.01",
            "compiled loop",
            "bare numba GCRA loop",
            "simulate end to end",
            "sliding log, rings",
            "bounded run (requests='none'",
            "--duration 6 (",
            "cost per request by scale",
            "scale  0.01:",
            "sliding logs' state by scale",
        ],
    ),
    "bench_simulation.py": (
        ["--events", "5000", "--scale", "0.005", "--repeat", "1"],
        [
            "bare SimPy timeout loop",
            "hand-written SimPy gateway (simpy_gateway.py)",
            "engine='event'",
            "engine='fast'",
        ],
    ),
    "fuzz_inputs.py": (
        ["--cases", "1", "--time-bound", "20"],
        ["cases 1,", "tracebacks 0, hangs 0"],
    ),
}
#: Modules of benchmarks/ that are not scripts (run through the script named).
NOT_SCRIPTS = {"simpy_gateway.py": "bench_simulation.py"}


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, subprocess.Popen[str]]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCH / name), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, (args, _lines) in SMOKE.items()
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_benchmark_script_is_covered() -> None:
    present = {p.name for p in BENCH.glob("*.py")}
    assert present == set(SMOKE) | set(NOT_SCRIPTS)
    for module, runner in NOT_SCRIPTS.items():
        assert module.removesuffix(".py") in (BENCH / runner).read_text()


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_benchmark_runs_and_prints_its_figures(
    runs: dict[str, subprocess.Popen[str]], name: str
) -> None:
    proc = runs[name]
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"{name} ran past {TIMEOUT_S} s:\n{out[-3000:]}")
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{out[-3000:]}"
    for line in SMOKE[name][1]:
        assert line in out, f"{name}: no line with {line!r} in:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
