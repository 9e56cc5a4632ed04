"""Run a suite: every scenario over its replications, every assertion on the confidence bound.

Each scenario of the suite runs ``replications`` times through
:func:`ratesim.experiments.sweep` with the suite's ``seed``: replication ``r`` of every scenario
gets the same seed (common random numbers), the standard metrics plus ``first_trip_s:<layer>``
and :mod:`ratesim.validate.metrics`. Everything (the suite, the policy, every scenario and every
assertion's metric) is checked before the first run.

With ``redis_url``, each scenario's first replication is also replayed on that Redis: the run's
own arrivals through the scenario's policy with the compat layer
(:func:`ratesim.replay.replay_policy` on a :class:`~ratesim.stores.RedisStore` with a fresh key
prefix), compared decision for decision with the model's oracle
(:func:`ratesim.replay.compare`): the parity column of the report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..importers import Imported
from ..policy import BACKEND_KINDS, PolicySpec
from ..scenario import Scenario
from .inputs import PolicyUnderTest, build_scenario, load_policy
from .metrics import available, validate_metrics
from .report import Report
from .rules import Context, Outcome
from .suite import Entry, Suite, SuiteError, load_suite

__all__ = ["RedisUnreachable", "run_suite", "validate"]

#: Seconds the parity replay waits for Redis per pipelined batch.
REPLAY_TIMEOUT_S = 10.0


class RedisUnreachable(ValueError):
    """``redis_url`` names no Redis that answers (bad input, checked before the first run)."""


@dataclass
class _Planned:
    entry: Entry
    scenario: Scenario
    notes: list[str]


def _plan(suite: Suite, put: PolicyUnderTest | None) -> list[_Planned]:
    """Every scenario built and every rule's metric checked (SuiteError naming the line)."""
    out = []
    for entry in suite.entries:

        def error(loc: tuple[int | str, ...], reason: str, i: int = entry.index) -> SuiteError:
            return suite.error(("scenarios", i, *loc), reason)

        if entry.spec.policy == "under-test" and put is None:
            raise error(("policy",), "policy: under-test, but no policy under test was given")
        sc, notes = build_scenario(entry, None if put is None else put.policy, error)
        layers = [layer.name for layer in sc.policy.layers]
        known = set(available(layers))
        for rule, loc in zip(entry.rules, entry.rule_locs, strict=True):
            missing = [c for c in rule.columns() if c not in known]
            if missing:
                raise suite.error(
                    loc,
                    f"{rule.text!r} in scenario {entry.label!r}: no metric {missing[0]!r} (the "
                    f"layers here are {', '.join(layers)}; see docs/guides/validate.md for the "
                    "metrics)",
                )
        out.append(_Planned(entry, sc, notes))
    return out


def _ping(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0).ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise RedisUnreachable(f"--redis {url}: no Redis answers there: {exc}") from None


def redis_parity(result: Any, url: str) -> dict[str, Any]:
    """The run's arrivals replayed on the Redis at ``url`` through its policy, compared with
    the oracle decision for decision: ``decisions``, ``identical``, ``differing``, ``first``.

    Concurrency and breaker layers act on backend completions a replay does not have (the
    oracle passes everything through them): they are left out of both sides.
    """
    from ..replay import compare, replay
    from ..stores import RedisStore
    from ..stores.redis_store import fresh_prefix

    oracle = result.oracle.requests
    policy = result.scenario.policy
    kept = [layer for layer in policy.layers if layer.algorithm.kind not in BACKEND_KINDS]
    dropped = [f"layer:{layer.name}" for layer in policy.layers if layer not in kept]
    requests = oracle[["time_us", "user", "tier", "route", "cost"]].astype(
        {"tier": str, "route": str}
    )
    store = RedisStore.from_url(
        url, timeout_s=REPLAY_TIMEOUT_S, prefix=fresh_prefix("ratesim:validate:")
    )
    replayed = replay(requests, PolicySpec(layers=kept), store)
    report = compare(replayed, oracle.drop(columns=dropped))
    return {
        "decisions": report.n,
        "identical": report.identical,
        "differing": report.differing_rows,
        "first": None if report.identical else str(report).splitlines()[0],
    }


def _outcomes(planned: _Planned, runs: pd.DataFrame, confidence: float) -> list[Outcome]:
    layers = [layer.name for layer in planned.scenario.policy.layers]
    ctx = Context(runs, layers, confidence, planned.scenario.duration_s)
    return [o for rule in planned.entry.rules for o in rule.evaluate(ctx)]


def run_suite(
    policy: PolicySpec | Imported | Scenario | str | os.PathLike[str] | None,
    suite: str | Path | Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    redis_url: str | None = None,
    progress: bool = True,
    engine: str = "auto",
    runner: Any = "serial",
    workers: int | None = None,
) -> Report:
    """Check ``policy`` against ``suite`` (``None``: the standard suite); see the module doc.

    ``kind``: the importer of a gateway config (``--from``); ``runner`` / ``workers``: as for
    :func:`ratesim.experiments.sweep` (default serial: a suite is small). Bad input (suite,
    policy, scenario, Redis URL) raises a ``ValueError`` naming the file, line and field.
    """
    from tqdm.auto import tqdm

    from ..engine import simulate
    from ..experiments import first_trip_metrics, sweep

    loaded = load_suite(suite)
    options: dict[str, Any] = dict(loaded.spec.importer)
    put = None if policy is None else load_policy(policy, kind, options)
    planned = _plan(loaded, put)
    if redis_url is not None:
        _ping(redis_url)
    spec = loaded.spec
    report = Report.start(loaded, put)
    bar = tqdm(total=len(planned) * spec.replications, disable=not progress, unit="run")
    try:
        for p in planned:
            bar.set_description(f"validate {p.entry.label}")
            runs = sweep(
                p.scenario,
                replications=spec.replications,
                seed=spec.seed,
                metrics=[first_trip_metrics, validate_metrics],
                runner=runner,
                workers=workers,
                progress=False,
                engine=engine,
            )
            bar.update(spec.replications)
            parity = None
            first_seed = int(runs["seed"].to_numpy()[0])
            if redis_url is not None:
                result = simulate(p.scenario, seed=first_seed, engine=engine)
                report.results[p.entry.label] = result
                parity = redis_parity(result, redis_url)
            report.add(
                p.entry.label,
                p.scenario,
                first_seed,
                runs,
                _outcomes(p, runs, spec.confidence),
                p.notes,
                parity,
            )
    finally:
        bar.close()
    return report


def validate(
    policy: PolicySpec | Imported | Scenario | str | os.PathLike[str] | None,
    suite: str | Path | Mapping[str, Any] | None = None,
    **options: Any,
) -> Report:
    """``ratesim.validate(policy, suite) -> Report``: :func:`run_suite` (same arguments)."""
    return run_suite(policy, suite, **options)
