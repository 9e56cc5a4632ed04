"""Server CPU per call of ratesim's Lua, beside a trivial GCRA script on the same server.

Starts its own redis-server on a free port (no persistence) and, for each delivery (Redis
Functions ``FCALL`` and ``EVALSHA`` scripts), runs the same calls through every contender:

* ``trivial``: the minimal correct GCRA, written here: read one number (the TAT), compare,
  write one number with a ``PX`` expiry, reply the admit flag. It is the floor any GCRA script
  pays on this server: the call itself, one ``GET``, one ``SET``.
* ``ratesim <algorithm>``: ratesim's Lua for each algorithm, called with the exact ARGV
  :class:`~ratesim.stores.RedisStore` sends;
* ``before <algorithm>`` (with ``--before REF``, default the commit before issue 10's Lua work):
  the Lua of that git revision, built by that revision's own ``_redis_lua`` in a subprocess and
  called with the same ARGV on keys of its own. Its replies must equal the current ones byte for
  byte (checked: the change must not alter a reply).

The figure is ``usec`` / ``calls`` of ``cmdstat_fcall`` / ``cmdstat_evalsha`` in
``INFO commandstats``, read after each sample of ``--chunk`` pipelined calls (``CONFIG
RESETSTAT`` before it): server time inside the command, nested ``GET``/``SET`` included, client
and network excluded. Redis times a command by the wall clock, so on a shared machine a sample
the server was preempted in reads high: the contenders run interleaved, round after round, and
each contender's best sample is kept (the median of the per-round ratios is printed beside it).
The ratio to ``trivial`` is the ratio of bests within this one run. Target (issue 10, build
item 5): ratesim's GCRA within 1.5x of the trivial script.

Workload: 1 000 random keys, all holding state after a warm-up, client time advancing 0-49 us
per call, parameters chosen so that (almost) every call is admitted and writes state: the
costly path.

Usage: ``python benchmarks/bench_lua_cpu.py [--rounds 15] [--chunk 500] [--chunks 4]
[--before REF|none] [--modes function,script] [--algos gcra,...] [--warmup 8000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis

from ratesim.algorithms import (
    GCRA,
    BucketedWindow,
    DoubleBufferedWindow,
    FixedWindow,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from ratesim.algorithms.base import Algorithm
from ratesim.stores import _redis_lua
from ratesim.stores._redis_wire import CallPacker
from ratesim.stores.redis_store import RedisStore

KEYSPACE = 1_000
#: Calls per contender before measuring: every key then holds a state.
WARMUP = 8_000
T0_US = 1_700_000_000_000_000
TARGET = 1.5
#: The main-branch commit whose Lua issue 10 set out to make cheaper.
BEFORE_REF = "e1ca916"

LIMITERS: dict[str, Algorithm] = {
    "gcra": GCRA(1_000_000, 1_000, 1),
    "token_bucket": TokenBucket(1_000_000, 1_000_000),
    "token_bucket_ticks": TokenBucket(1_000_000, 1_000_000, "ticker", 0.001),
    "fixed_window": FixedWindow(1_000_000, 1),
    "sliding_window_counter": SlidingWindowCounter(1_000_000, 1),
    "sliding_log": SlidingWindowLog(100, 1),
    "bucketed_window": BucketedWindow(1_000_000, 1, 10),
    "double_buffered_window": DoubleBufferedWindow(1_000_000, 1, 10, 0.1),
}

TRIVIAL_GCRA = """
local now = tonumber(args[1])
local t_us = tonumber(args[3])
local dvt_us = tonumber(args[4])
local tat = now
local old = redis.call('GET', keys[1])
if old then
  local v = tonumber(old)
  if v > now then tat = v end
end
local new_tat = tat + t_us
if new_tat - dvt_us > now then
  return 0
end
redis.call('SET', keys[1], string.format('%.0f', new_tat),
           'PX', math.ceil((new_tat - now) / 1000) + 60000)
return 1
"""
TRIVIAL_FUNCTION = (
    "#!lua name=bench_trivial\n"
    "redis.register_function('bench_trivial_gcra', function(keys, args)\n"
    f"{TRIVIAL_GCRA}end)\n"
)
TRIVIAL_SCRIPT = f"local keys, args = KEYS, ARGV\n{TRIVIAL_GCRA}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not on PATH (make redis-server installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            if client.ping():
                return proc, port
        except redis.exceptions.ConnectionError:
            time.sleep(0.01)
    proc.kill()
    sys.exit("redis-server did not start")


def before_bundle(ref: str) -> dict[str, Any] | None:
    """The Function library and scripts of git revision ``ref``, built by its own code."""
    repo = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        print(f"(no git checkout here: --before {ref} skipped)")
        return None
    with tempfile.TemporaryDirectory(prefix="ratesim-before-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", ref, "ratesim"], capture_output=True, check=False
        )
        if archive.returncode != 0:
            print(f"(git archive {ref} failed: --before skipped) {archive.stderr.decode()}")
            return None
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        code = (
            "import json; from ratesim.stores import _redis_lua as L; b = L.bundle();"
            "print(json.dumps({'library': b.library_source, 'functions': b.functions,"
            " 'scripts': {a: s[1] for a, s in b.scripts.items()},"
            " 'sources': {a: s[0] for a, s in b.scripts.items()}}))"
        )
        env = dict(os.environ, PYTHONPATH=tmp)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp, capture_output=True, check=True
        )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


@dataclass
class Contender:
    label: str
    algo: str  # key of LIMITERS
    mode: str  # "function" or "script"
    packer: CallPacker
    prefix: str
    trivial: bool = False


def workload(n: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(7)
    keys = [f"k{k}" for k in rng.integers(0, KEYSPACE, n)]
    times = [str(t) for t in (T0_US + np.cumsum(rng.integers(0, 50, n))).tolist()]
    return keys, times


def run_calls(conn: Any, c: Contender, keys: list[str], times: list[str], span: range) -> list[Any]:
    """The calls ``span`` of one contender in one pipeline; returns the raw replies."""
    payload = b"".join(c.packer.pack(c.prefix + keys[i], times[i], 1) for i in span)
    conn.send_packed_command([payload])
    return [conn.read_response() for _ in span]


def usec_per_call(client: redis.Redis, mode: str) -> float:
    stats = client.info("commandstats")
    entry = stats["cmdstat_fcall" if mode == "function" else "cmdstat_evalsha"]
    if entry.get("failed_calls", 0) or entry.get("rejected_calls", 0):
        sys.exit(f"calls failed on the server: {entry}")
    return float(entry["usec"]) / float(entry["calls"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=500, help="calls per sample (one pipeline)")
    parser.add_argument("--chunks", type=int, default=4, help="samples per contender and round")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (best kept)")
    parser.add_argument(
        "--before", default=BEFORE_REF, help="git revision to compare with, or 'none'"
    )
    parser.add_argument("--modes", default="function,script", help="deliveries to measure")
    parser.add_argument("--algos", default=",".join(LIMITERS), help="algorithms to measure")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="unmeasured calls first")
    args = parser.parse_args()
    modes = args.modes.split(",")
    algos = args.algos.split(",")
    old = None if args.before == "none" else before_bundle(args.before)
    bundle = _redis_lua.bundle()
    keys, times = workload(args.warmup + args.rounds * args.chunks * args.chunk)
    with tempfile.TemporaryDirectory(prefix="ratesim-bench-") as tmp:
        proc, port = start_server(tmp)
        try:
            client = redis.Redis(port=port)
            client.function_load(TRIVIAL_FUNCTION)
            client.function_load(bundle.library_source)
            trivial_sha = client.script_load(TRIVIAL_SCRIPT)
            for src, _sha in bundle.scripts.values():
                client.script_load(src)
            if old is not None:
                client.function_load(old["library"], replace=True)
                for src in old["sources"].values():
                    client.script_load(src)
            # An hour's TTL floor: on a loaded machine a run can outlast the default 60 s, and a
            # key of one contender expiring while another's lives would make replies differ.
            store = RedisStore(client, ttl_floor_us=3_600_000_000, _warn_retry=False)
            contenders: list[Contender] = []
            for mode in modes:
                verb = "FCALL" if mode == "function" else "EVALSHA"
                # ARGV now, cost (always 1, unused), T, DVT of the GCRA under test: the trivial
                # script admits exactly when ratesim's GCRA does (checked below).
                t_us, dvt_us, _ = LIMITERS["gcra"].params
                target = "bench_trivial_gcra" if mode == "function" else trivial_sha
                contenders.append(
                    Contender(
                        "trivial",
                        "gcra",
                        mode,
                        CallPacker(verb, target, [str(t_us), str(dvt_us)]),
                        f"{mode}:trivial:",
                        trivial=True,
                    )
                )
                for algo in algos:
                    lim = LIMITERS[algo]
                    tail = store._spec(lim).argv_tail
                    name = lim.name
                    new_target = (
                        bundle.functions[name] if mode == "function" else bundle.scripts[name][1]
                    )
                    contenders.append(
                        Contender(
                            f"ratesim {algo}",
                            algo,
                            mode,
                            CallPacker(verb, new_target, tail),
                            f"{mode}:new:{algo}:",
                        )
                    )
                    if old is not None:
                        old_target = (
                            old["functions"][name] if mode == "function" else old["scripts"][name]
                        )
                        contenders.append(
                            Contender(
                                f"before {algo}",
                                algo,
                                mode,
                                CallPacker(verb, old_target, tail),
                                f"{mode}:old:{algo}:",
                            )
                        )
            conn = client.connection_pool.get_connection()
            # Warm-up (not measured): every contender's keys exist, so each measured call reads
            # and writes a stored state.
            warm = range(0, args.warmup)
            for c in contenders:
                run_calls(conn, c, keys, times, warm)
            best: dict[tuple[str, str], float] = {}
            ratios: dict[tuple[str, str], list[float]] = {}
            pos = args.warmup
            for r in range(args.rounds):
                round_us: dict[tuple[str, str], float] = {}
                replies: dict[tuple[str, str], list[Any]] = {}
                span = range(pos, pos + args.chunks * args.chunk)
                pos = span.stop
                for c in contenders:
                    got: list[Any] = []
                    for start in range(span.start, span.stop, args.chunk):
                        client.config_resetstat()
                        got += run_calls(conn, c, keys, times, range(start, start + args.chunk))
                        us = usec_per_call(client, c.mode)
                        label = (c.mode, c.label)
                        round_us[label] = min(us, round_us.get(label, us))
                    replies[(c.mode, c.label)] = got
                for label, us in round_us.items():
                    best[label] = min(us, best.get(label, us))
                for c in contenders:
                    if c.trivial:
                        assert all(x == 1 for x in replies[(c.mode, c.label)]), "trivial denied"
                        continue
                    base = round_us[(c.mode, "trivial")]
                    ratios.setdefault((c.mode, c.label), []).append(
                        round_us[(c.mode, c.label)] / base
                    )
                    if c.label.startswith("before "):
                        new = replies[(c.mode, "ratesim " + c.algo)]
                        if new != replies[(c.mode, c.label)]:
                            sys.exit(f"{c.mode} {c.algo}: replies differ from {args.before}")
                    elif c.algo == "gcra":
                        # The trivial script admits exactly when ratesim's GCRA does.
                        got = [int(x.split(b",")[0]) for x in replies[(c.mode, c.label)]]
                        assert got == replies[(c.mode, "trivial")], "trivial GCRA disagrees"
                print(
                    f"round {r + 1}/{args.rounds}: "
                    + ", ".join(
                        f"{m} gcra {round_us[(m, 'ratesim gcra')] / round_us[(m, 'trivial')]:.2f}x"
                        for m in modes
                        if (m, "ratesim gcra") in round_us
                    ),
                    flush=True,
                )
            client.connection_pool.release(conn)
        finally:
            proc.kill()
            proc.wait()
    print(
        f"\nserver CPU per call: usec_per_call, best sample of {args.chunk} calls over "
        f"{args.rounds} rounds x {args.chunks} samples; ratio = best / best trivial GCRA "
        f"(median: of the per-round ratios); target for GCRA <= {TARGET}x"
    )
    if old is not None:
        print(f"'before' is git {args.before}; its replies equal the current ones byte for byte")
    for mode in modes:
        verb = "FCALL" if mode == "function" else "EVALSHA"
        triv = best[(mode, "trivial")]
        print(f"\n{verb}: trivial GCRA {triv:.2f} us/call")
        header = f"  {'algorithm':24s} {'now us':>8s} {'ratio':>7s}  {'median':>7s}"
        if old is not None:
            header += f"  {'before us':>9s} {'ratio':>7s}"
        print(header)
        for algo in algos:
            now = best[(mode, f"ratesim {algo}")]
            med = sorted(ratios[(mode, f"ratesim {algo}")])[args.rounds // 2]
            line = f"  {algo:24s} {now:8.2f} {now / triv:6.2f}x  {med:6.2f}x"
            if old is not None:
                was = best[(mode, f"before {algo}")]
                line += f"  {was:9.2f} {was / triv:6.2f}x"
            if algo == "gcra":
                # Met only when the per-round median agrees: one lucky (or unlucky) best sample
                # of the trivial script alone must not decide.
                met = max(now / triv, med) <= TARGET
                line += f"   target <= {TARGET}x: {'met' if met else 'MISSED'}"
            print(line)


if __name__ == "__main__":
    main()
