"""Validate a gateway config against the exchange surge, then replay it on a real Redis: the
figures of notebooks/05-validate-imported-config.ipynb.

Imports ``--config`` (nginx, Envoy ratelimit or local rate limit, Kong, Traefik, Sentinel;
``ratesim.importers.load``; default: the notebook's nginx config), runs its policy in the
built-in ``exchange-surge`` scenario (its 4 nodes standing for 4 gateway hosts) and checks each
``--assert`` on the 95% confidence bound over ``--replications`` (``ratesim.validate``). The
same policy with every layer's state shared in Redis (``scope: global``) is validated next.
Then the shared policy's decisions are replayed on a real Redis through the compat layer
(``ratesim.replay.replay_policy`` on a ``RedisStore``) and compared with the model's oracle,
request by request. Writes:

* ``policy.yaml``: the imported policy, with the importer's notes;
* ``assertions.parquet``: per variant (as written, shared) and assertion: mean, bound, holds;
* ``oracle_gap.png``: the gap to the oracle of each variant, by layer;
* ``redis_replay.parquet``: requests replayed, seconds taken, rows differing from the oracle
  and from the in-memory store (absent with ``--no-redis`` or without ``redis-server``).

Exit status 0, or 1 with ``--strict`` when an assertion fails for the config as written.

    .venv/bin/python experiments/validate_config.py [--config FILE] [--kind KIND]
        [--assert 'over_admitted_pct < 1' ...] [--scale 0.25] [--replications 5]
        [--redis-url URL | --no-redis] [--strict] [--seed 0] [--out DIR] [--small]
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from _common import Outputs, figure, parser, run

import ratesim
from ratesim import MemoryStore, plots, scenarios
from ratesim.experiments import apply, summarize, sweep
from ratesim.importers import load
from ratesim.replay import compare, replay_policy
from ratesim.validate import check, parse_assertion

EXAMPLE_NGINX = """\
http {
    limit_req_zone $binary_remote_addr zone=per_client:10m rate=10r/s;
    limit_req_zone $server_name        zone=orders:1m      rate=400r/s;
    server {
        location /api/v3/ticker { limit_req zone=per_client burst=20 nodelay; }
        location /api/v3/depth  { limit_req zone=per_client burst=20 nodelay; }
        location /api/v3/order {
            limit_req zone=per_client burst=20 nodelay;
            limit_req zone=orders burst=100 nodelay;
        }
    }
}
"""
DEFAULT_ASSERTIONS = [
    "over_admitted_pct < 1",
    "legit_wrongly_rejected_pct < 1",
    "p99_decision_latency_ms < 20",
]


def validate(scenario: Any, texts: list[str], replications: int, seed: int) -> pd.DataFrame:
    """One row per assertion: the replication mean, the bound it is checked on, and the verdict."""
    assertions = [parse_assertion(t) for t in texts]
    runs = sweep(scenario, replications=replications, runner="serial", progress=False, seed=seed)
    row = summarize(runs).iloc[0]
    out = []
    for a in assertions:
        mean, low, high = (row[f"{a.metric}_{k}"] for k in ("mean", "ci95_low", "ci95_high"))
        bound = high if a.op in ("<", "<=") else low if a.op in (">", ">=") else mean
        out.append(
            {"assertion": a.text, "mean": mean, "bound": bound, "holds": check(a, mean, low, high)}
        )
    return pd.DataFrame(out)


@contextmanager
def redis_server(url: str | None) -> Iterator[str | None]:
    """``url`` itself, or a throwaway redis-server on a free port (``None`` if none on PATH)."""
    if url is not None:
        yield url
        return
    if shutil.which("redis-server") is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def replay_on_redis(url: str, scenario: Any, seed: int) -> dict[str, Any]:
    from ratesim.stores import RedisStore
    from ratesim.stores.redis_store import fresh_prefix

    result = ratesim.simulate(scenario, seed=seed)
    requests = result.requests[["time_us", "user", "tier", "route", "cost"]]
    store = RedisStore.from_url(url, timeout_s=2.0, prefix=fresh_prefix())
    start = time.perf_counter()
    on_redis = replay_policy(requests, scenario.policy, store)
    took = time.perf_counter() - start
    vs_oracle = compare(result.oracle.requests, on_redis)
    vs_memory = compare(replay_policy(requests, scenario.policy, MemoryStore()), on_redis)
    print(f"replayed {len(requests)} requests on {url} ({store.mode}) in {took:.1f} s")
    print(f"  vs the model's oracle: {vs_oracle}\n  vs the in-memory store: {vs_memory}")
    return {
        "requests": len(requests),
        "seconds": took,
        "delivery": store.mode,
        "differ_from_oracle": vs_oracle.differing_rows,
        "differ_from_memory": vs_memory.differing_rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "validate_config")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the gateway config to validate (default: the notebook's nginx example)",
    )
    p.add_argument(
        "--kind",
        default=None,
        help="importer kind (nginx, envoy-ratelimit, envoy-local, kong, traefik, "
        "sentinel; default: guessed from the file)",
    )
    p.add_argument(
        "--assert",
        dest="assertions",
        action="append",
        default=None,
        metavar="TEXT",
        help="an assertion '<metric> <op> <number>' (repeatable; default: "
        + "; ".join(DEFAULT_ASSERTIONS)
        + ")",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="exchange-surge scale (default 0.25; 0.02 with --small)",
    )
    p.add_argument(
        "--replications",
        type=int,
        default=None,
        help="runs per variant (default 5; 2 with --small)",
    )
    p.add_argument(
        "--redis-url",
        default=None,
        help="replay on this Redis (default: start a throwaway redis-server)",
    )
    p.add_argument("--no-redis", action="store_true", help="skip the replay on Redis")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when an assertion fails for the config as written",
    )
    args = p.parse_args(argv)
    scale = args.scale or (0.02 if args.small else 0.25)
    reps = args.replications or (2 if args.small else 5)
    texts = args.assertions or DEFAULT_ASSERTIONS
    out = Outputs(args.out)

    config = args.config
    if config is None:
        config = args.out / "nginx.conf"
        config.write_text(EXAMPLE_NGINX)
    imported = load(config, args.kind)
    (args.out / "policy.yaml").write_text(imported.policy_yaml())
    surge = scenarios.get("exchange-surge", scale=scale)
    as_written = apply(surge, {"policy": imported.policy.model_dump()})
    shared = apply(
        as_written,
        {f"policy.layers[{layer.name}].scope": "global" for layer in imported.policy.layers},
    )
    variants = {"as written": as_written, "shared in Redis": shared}
    tables = []
    fig, axes = figure((18, 4.5), 1, 2)
    for ax, (name, scenario) in zip(axes, variants.items(), strict=True):
        table = validate(scenario, texts, reps, args.seed + 7)
        print(f"{name}:\n{table.to_string(index=False)}\n")
        tables.append(table.assign(variant=name))
        plots.oracle_gap(ratesim.simulate(scenario, seed=args.seed), ax=ax).set_title(name)
    out.table("assertions", pd.concat(tables, ignore_index=True))
    out.png("oracle_gap", fig)

    if not args.no_redis:
        with redis_server(args.redis_url) as url:
            if url is None:
                print("redis-server is not on PATH: no replay on Redis (install Redis >= 6)")
            else:
                out.table("redis_replay", pd.DataFrame([replay_on_redis(url, shared, args.seed)]))
    out.done()
    failed = not tables[0]["holds"].all()
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    run(main)
