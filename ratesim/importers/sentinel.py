"""Alibaba Sentinel ``FlowRule`` and ``DegradeRule`` JSON (1.8.x).

The file is a JSON array of rules (flow and degrade rules told apart by their fields) or an
object with ``flowRules`` / ``degradeRules`` arrays. Each rule guards its ``resource``, which
ratesim models as the route of that name. Flow rules (``grade: 1``, QPS):

* ``controlBehavior: 0`` (reject): ``passQps + acquire > count`` on a 2 x 500 ms LeapArray,
  :class:`~ratesim.algorithms.BucketedWindow` (``count``, 1 s, 2 buckets);
* ``1`` (warm-up): :class:`~ratesim.algorithms.WarmUpBucket` (``warmUpPeriodSec``, cold 3);
* ``2`` (throttling): :class:`~ratesim.algorithms.UniformPacer` (``maxQueueingTimeMs``), shaping;
* ``grade: 0`` (threads): a concurrency limit of ``count``.

``clusterMode``: one threshold for the cluster (``thresholdType: 1``; ``0`` is ``count`` per
connected client, ``nodes=`` option) in the token server (global scope, 20 ms client timeout);
``fallbackToLocalWhenFail`` (default true) then limits locally with the rule's ``count`` on
every node (``failure_mode: local``): the whole cluster threshold with ``thresholdType: 1``
(``local_share: 1``), one client's share with ``thresholdType: 0`` (``local_share: 1/nodes``). Degrade rules become circuit breakers
(slow ratio, error ratio, error count) after the flow rules, as Sentinel's slot chain runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Builder, Imported, LineDict, as_number, line_of, load_yaml

BEHAVIOURS = {0: "reject", 1: "warm-up", 2: "throttling", 3: "warm-up + throttling"}
DEGRADE_GRADES = {0: "slow_ratio", 1: "error_ratio", 2: "error_count"}


def load(path: Path, text: str, *, nodes: int | None = None, **_options: Any) -> Imported:
    """Import Sentinel flow and degrade rules (see the module docstring)."""
    b = Builder("sentinel", path)
    root = load_yaml(path, text)
    flow, degrade = _split(b, root)
    for rule in flow:
        _flow(b, rule, nodes)
    for rule in degrade:
        _degrade(b, rule)
    if not b.layers:
        raise b.error(line_of(root), "rules", "no flow or degrade rule found")
    b.facts["clock"] = "each application instance's millisecond clock (TimeUtil)"
    return b.result()


def _split(b: Builder, root: Any) -> tuple[list[LineDict], list[LineDict]]:
    if isinstance(root, dict):
        flow = root.get("flowRules") or []
        degrade = root.get("degradeRules") or []
        if not isinstance(flow, list) or not isinstance(degrade, list):
            raise b.error(line_of(root), "flowRules / degradeRules", "must be JSON arrays")
        rules = [*flow, *degrade]
    elif isinstance(root, list):
        rules = root
    else:
        raise b.error(line_of(root), "rules", "must be a JSON array of rules")
    out: tuple[list[LineDict], list[LineDict]] = ([], [])
    for r in rules:
        if not isinstance(r, LineDict) or "resource" not in r or "count" not in r:
            raise b.error(line_of(r) or line_of(root), "rule", "needs resource and count")
        is_degrade = "timeWindow" in r or "slowRatioThreshold" in r or "minRequestAmount" in r
        out[1 if is_degrade else 0].append(r)
    return out


def _flow(b: Builder, r: LineDict, nodes: int | None) -> None:
    res = str(r["resource"])
    grade = as_number(b, r.get("grade", 1), r.line_of("grade"), "grade", integer=True)
    count = as_number(b, r["count"], r.line_of("count"), "count", integer=False)
    strategy = as_number(b, r.get("strategy", 0), r.line_of("strategy"), "strategy", integer=True)
    if strategy != 0:
        raise b.error(r.line_of("strategy"), f"FlowRule strategy {strategy} on {res}",
                      "relate (1) and chain (2) strategies depend on other resources' traffic; "
                      "only direct (0) is mapped")  # fmt: skip
    if str(r.get("limitApp", "default")) != "default":
        b.note(f"{res}: limitApp {r['limitApp']} (an origin) is applied to every caller")
    behaviour = as_number(b, r.get("controlBehavior", 0), r.line_of("controlBehavior"),
                          "controlBehavior", integer=True)  # fmt: skip
    if grade == 0:
        alg: dict[str, Any] = {"kind": "concurrency", "max_in_flight": _whole(b, r, count)}
        b.note(f"{res}: a thread-count rule needs the scenario's backend (it holds requests)")
    elif grade != 1:
        raise b.error(r.line_of("grade"), f"FlowRule grade {grade}", "must be 0 (threads) or 1")
    elif behaviour == 0:
        n = int(count)
        if n != count:
            b.note(f"{res}: count {count:g} admits floor(count) = {n} (passQps is whole)")
        alg = {"kind": "bucketed_window", "limit": max(n, 1), "window_s": 1.0, "buckets": 2}
    elif behaviour == 1:
        warm = as_number(b, r.get("warmUpPeriodSec", 10), r.line_of("warmUpPeriodSec"),
                         "warmUpPeriodSec", integer=True)  # fmt: skip
        alg = {"kind": "warm_up", "count": _whole(b, r, count), "warm_up_s": warm}
    elif behaviour == 2:
        q = as_number(b, r.get("maxQueueingTimeMs", 500), r.line_of("maxQueueingTimeMs"),
                      "maxQueueingTimeMs", integer=True)  # fmt: skip
        n = _whole(b, r, count)
        alg = {"kind": "pacer", "count": n, "max_queue_ms": q,
               "resolution_us": 1000 if n <= 1000 else 1}  # fmt: skip
        b.note(f"{res}: throttling queues requests up to {q} ms; the simulation holds each "
               "queued request for its wait, then forwards it")  # fmt: skip
        if n > 1000:
            b.note(f"{res}: count {n} > 1000: paced in µs (Sentinel paces in ns)")
    else:
        raise b.error(r.line_of("controlBehavior"),
                      f"FlowRule controlBehavior {behaviour} ({BEHAVIOURS.get(behaviour, '?')})",
                      "is not mapped (0 reject, 1 warm-up and 2 throttling are)")  # fmt: skip
    layer: dict[str, Any] = {"scope": "node"}
    where = "application instance"
    if r.get("clusterMode") and grade == 1:
        layer, where = _cluster(b, r, res, nodes, alg)
    b.add(r.line, f"FlowRule {res}", where, name=f"flow-{res}", algorithm=alg,
          key="*", routes=[res], **layer)  # fmt: skip
    b.note(f"{res}: the rule guards the route named {res!r}, one counter per instance")


def _cluster(b: Builder, r: LineDict, res: str, nodes: int | None,
             alg: dict[str, Any]) -> tuple[dict[str, Any], str]:  # fmt: skip
    cc = r.get("clusterConfig") or {}
    threshold = as_number(b, cc.get("thresholdType", 0), line_of(cc, "thresholdType"),
                          "clusterConfig.thresholdType", integer=True)  # fmt: skip
    if threshold == 0:
        n = nodes or 1
        b.note(f"{res}: thresholdType 0 (average per client): the cluster threshold is count x "
               f"{n} client(s) (pass nodes= to set it)")  # fmt: skip
        for k in ("limit", "count"):
            if k in alg:
                alg[k] *= n
    fallback = cc.get("fallbackToLocalWhenFail", True)
    layer: dict[str, Any] = {"scope": "global", "timeout_ms": 20.0, "time_source": "client"}
    if fallback and threshold == 0:
        # The fallback checks the rule's own `count` locally: with thresholdType 0 that is
        # one client's share of the cluster threshold (count x clients).
        layer.update(failure_mode="local", local_share=1.0 / (nodes or 1))
        b.note(f"{res}: fallbackToLocalWhenFail: every node falls back to count = {r['count']}")
    elif fallback:
        layer.update(failure_mode="local", local_share=1.0)
        b.note(f"{res}: fallbackToLocalWhenFail: every node falls back to the full count")
    else:
        layer["failure_mode"] = "open"
    return layer, "token server"


def _whole(b: Builder, r: LineDict, count: float) -> int:
    if count != int(count) or count < 1:
        raise b.error(r.line_of("count"), f"count {count:g}",
                      "must be a whole number >= 1 for this rule type")  # fmt: skip
    return int(count)


def _degrade(b: Builder, r: LineDict) -> None:
    res = str(r["resource"])
    grade = as_number(b, r.get("grade", 0), r.line_of("grade"), "grade", integer=True)
    if grade not in DEGRADE_GRADES:
        raise b.error(r.line_of("grade"), f"DegradeRule grade {grade}",
                      "must be 0 (slow ratio), 1 (error ratio) or 2 (error count)")  # fmt: skip
    count = as_number(b, r["count"], r.line_of("count"), "count", integer=False)
    window = as_number(b, r.get("timeWindow", 0), r.line_of("timeWindow"), "timeWindow",
                       integer=False)  # fmt: skip
    if window <= 0:
        raise b.error(r.line_of("timeWindow"), "DegradeRule timeWindow", "must be > 0 seconds")
    alg: dict[str, Any] = {
        "kind": "circuit_breaker",
        "grade": DEGRADE_GRADES[grade],
        "min_requests": as_number(b, r.get("minRequestAmount", 5), r.line_of("minRequestAmount"),
                                  "minRequestAmount", integer=True),
        "stat_interval_s": as_number(b, r.get("statIntervalMs", 1000), r.line_of("statIntervalMs"),
                                     "statIntervalMs", integer=True) / 1000,
        "open_s": window,
    }  # fmt: skip
    if grade == 0:
        alg["max_rt_s"] = count / 1000
        alg["threshold"] = as_number(b, r.get("slowRatioThreshold", 1.0),
                                     r.line_of("slowRatioThreshold"), "slowRatioThreshold",
                                     integer=False)  # fmt: skip
    else:
        alg["threshold"] = count
    b.add(r.line, f"DegradeRule {res}", "application instance", name=f"degrade-{res}",
          algorithm=alg, key="*", routes=[res], scope="node")  # fmt: skip
    b.note(f"{res}: a degrade rule needs the scenario's backend (it watches completions)")
