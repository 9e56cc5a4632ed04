"""Validate a gateway config with ``ratesim.validate``, then on a real Redis: the figures of
notebooks/05-validate-imported-config.ipynb.

Imports ``--config`` (nginx, Envoy ratelimit or local rate limit, Kong, Traefik, Sentinel;
``ratesim.importers.load``; default: the notebook's nginx config) and validates its policy with
``ratesim.validate`` against a suite: ``--suite SUITE.yaml``, or the built-in
``exchange-surge`` (its 4 nodes standing for 4 gateway hosts) at ``--scale`` with each
``--assert`` checked on the 95% confidence bound over ``--replications``. The same policy with
every layer's state shared in Redis (``scope: global``) is validated next, with ``ratesim
validate --redis``'s parity check on a real Redis: each scenario's first replication replayed
through the compat layer and compared with the model's oracle, decision for decision. Writes:

* ``policy.yaml``: the imported policy, with the importer's notes;
* ``assertions.parquet``: the two reports' tables (``variant``: as written, shared in Redis):
  per scenario and assertion the mean, the confidence bounds, the verdict and its detail;
* ``oracle_gap.png``: the gap to the oracle of each variant in the suite's first scenario;
* ``redis_replay.parquet``: per scenario the decisions replayed on Redis, whether they are
  identical to the oracle's, how many differ, and the seconds the shared variant's validation
  took (absent with ``--no-redis`` or without ``redis-server`` on PATH: then the script says so).

Exit status 0, or 1 with ``--strict`` when an assertion fails for the config as written.

    .venv/bin/python experiments/validate_config.py [--config FILE] [--kind KIND]
        [--suite SUITE.yaml | --assert 'over_admitted_pct < 1' ... --scale 0.25
        --replications 5] [--redis-url URL | --no-redis] [--strict] [--seed 0] [--out DIR]
        [--small]
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
from _common import Outputs, figure, parser, run

import ratesim
from ratesim import plots
from ratesim.importers import load
from ratesim.policy import PolicySpec
from ratesim.validate import validate

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


def surge_suite(texts: list[str], scale: float, replications: int, seed: int) -> dict[str, Any]:
    """The default suite: the built-in exchange surge at ``scale`` with the policy under test
    dropped in, ``texts`` its assertions (the suite format of docs/guides/validate.md)."""
    return {
        "replications": replications,
        "seed": seed,
        "scenarios": [
            {
                "builtin": "exchange-surge",
                "name": "surge",
                "scale": scale,
                "policy": "under-test",
                "assertions": texts,
            }
        ],
    }


def shared(policy: PolicySpec) -> PolicySpec:
    """``policy`` with every layer's state in the shared store (``scope: global``)."""
    data = policy.model_dump()
    for layer in data["layers"]:
        layer["scope"] = "global"
    return PolicySpec.model_validate(data)


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


def first_scenario_gap(ax: Any, report: Any, title: str) -> None:
    """The gap to the oracle in the report's first scenario, its first replication."""
    label, (scenario, seed) = next(iter(report.scenarios.items()))
    plots.oracle_gap(ratesim.simulate(scenario, seed=seed, progress=False), ax=ax)
    ax.set_title(f"{title}: gap to the oracle ({label}, first replication)")


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
        help="replications per scenario (default 5; 3 with --small)",
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
    p.add_argument(
        "--suite",
        type=Path,
        default=None,
        help="a ratesim validate suite YAML (replaces --assert, --scale and --replications)",
    )
    args = p.parse_args(argv)
    scale = args.scale or (0.02 if args.small else 0.25)
    reps = args.replications or (3 if args.small else 5)  # with 2 the t factor is 12.7
    texts = args.assertions or DEFAULT_ASSERTIONS
    out = Outputs(args.out)

    config = args.config
    if config is None:
        config = args.out / "nginx.conf"
        config.write_text(EXAMPLE_NGINX)
    try:
        imported = load(config, args.kind)
    except ValueError as exc:  # an importer's message names the file, the line, the construct
        p.error(str(exc))
    (args.out / "policy.yaml").write_text(imported.policy_yaml())
    suite: Any = args.suite or surge_suite(texts, scale, reps, args.seed + 7)

    try:  # bad input (a suite, a scenario, an unreachable --redis-url) is a message, exit 2
        as_written = validate(imported, suite, progress=False)
    except ValueError as exc:
        p.error(str(exc))
    print(f"as written:\n{as_written.format_table()}\n")
    fig, axes = figure((18, 4.5), 1, 2)
    first_scenario_gap(axes[0], as_written, "as written")
    fixed = shared(imported.policy)
    server: AbstractContextManager[str | None] = (
        nullcontext(None) if args.no_redis else redis_server(args.redis_url)
    )
    with server as url:
        if args.no_redis:
            print("--no-redis: the shared policy is validated without the replay on Redis")
        elif url is None:
            print("redis-server is not on PATH: no replay on Redis (install Redis >= 6)")
        start = time.perf_counter()
        try:
            on_redis = validate(fixed, suite, progress=False, redis_url=url)
        except ValueError as exc:
            p.error(str(exc))
        took = time.perf_counter() - start
    print(f"shared in Redis:\n{on_redis.format_table()}")
    first_scenario_gap(axes[1], on_redis, "shared in Redis")
    tables = [as_written.table.assign(variant="as written")]
    tables.append(on_redis.table.assign(variant="shared in Redis"))
    out.table("assertions", pd.concat(tables, ignore_index=True))
    out.png("oracle_gap", fig)
    if len(on_redis.parity):
        out.table("redis_replay", on_redis.parity.assign(validate_seconds=took))
    out.done()
    return 1 if args.strict and not as_written.passed else 0


if __name__ == "__main__":
    run(main)
