"""Comparison assertions of a validation suite: ``<metric> <op> <number>``.

``<metric>`` is a metric column (``over_admitted_pct``, a per-layer ``rejected:<layer>``), an
alias (:data:`ALIASES`) or ``first_trip(<layer>)``. The number may carry the metric's unit
(``first_trip(site_orders) > 9s``, ``p99_decision_latency_ms < 12ms``, ``fail_open_pct < 5%``);
a unit that is not the metric's is a syntax error.

An assertion holds on the confidence bound, not on one seed: for ``<`` / ``<=`` the upper
bound of the mean's confidence interval over replications must satisfy it, for ``>`` / ``>=``
the lower bound; ``==`` / ``!=`` compare the mean. A metric that is NaN (e.g. a layer that
never trips, so ``first_trip(layer)`` is NaN) passes ``>`` and ``>=`` ("never" is later than
any bound) and fails every other operator.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ALIASES", "Assertion", "AssertionSyntaxError", "check", "parse_assertion"]

# suite spellings of metrics, mapped to ratesim.experiments.standard_metrics names
ALIASES = {"p99_decision_latency_ms": "latency_p99_ms"}

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_PATTERN = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][\w.\-]*(?::[\w.\-]+|\([\w.\-]+\))?)\s*(?P<op><=|>=|==|!=|<|>)"
    r"\s*(?P<bound>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>ms|s|%)?\s*$"
)


class AssertionSyntaxError(ValueError):
    """An assertion string that is not ``<metric> <op> <number>``."""


@dataclass(frozen=True)
class Assertion:
    """One parsed comparison: ``metric`` (a standard_metrics column name, aliases resolved),
    ``op`` one of ``< <= > >= == !=``, ``bound`` the number it is compared with, ``text`` as
    written."""

    text: str
    metric: str
    op: str
    bound: float


def _metric_column(name: str) -> str:
    """The table column a suite metric names: ``first_trip(per-user)`` is the
    ``first_trip_s:per-user`` column of ratesim.experiments.first_trip_metrics (seconds); other
    names go through ALIASES."""
    match = re.fullmatch(r"first_trip\((?P<layer>[\w.\-]+)\)", name)
    if match:
        return f"first_trip_s:{match['layer']}"
    return ALIASES.get(name, name)


def parse_assertion(text: str) -> Assertion:
    """Parse ``"over_admitted_pct < 1"``; raises AssertionSyntaxError naming the text."""
    match = _PATTERN.match(text)
    if match is None:
        raise AssertionSyntaxError(
            f"assertion {text!r}: expected '<metric> <op> <number>' with op one of "
            + " ".join(_OPS)
        )
    metric = _metric_column(match["metric"])
    unit = match["unit"]
    if unit is not None and unit != _unit_of(metric):
        raise AssertionSyntaxError(
            f"assertion {text!r}: the bound is in {unit!r} but {match['metric']} is "
            + (f"in {_unit_of(metric)!r}" if _unit_of(metric) else "a count (no unit)")
        )
    return Assertion(text, metric, match["op"], float(match["bound"]))


def _unit_of(column: str) -> str | None:
    """The unit a bound of this metric column may be written with: ``ms``, ``s`` or ``%``."""
    base = column.split(":", 1)[0]
    for suffix, unit in (("_ms", "ms"), ("_s", "s"), ("_pct", "%")):
        if base.endswith(suffix):
            return unit
    return None


def check(assertion: Assertion, mean: float, ci_low: float, ci_high: float) -> bool:
    """Whether ``assertion`` holds for a metric with this replication mean and confidence
    interval (NaN bounds, from a single replication, fall back to the mean)."""
    op = assertion.op
    if math.isnan(mean):
        return op in (">", ">=")
    if op in ("<", "<="):
        value = mean if math.isnan(ci_high) else ci_high
    elif op in (">", ">="):
        value = mean if math.isnan(ci_low) else ci_low
    else:
        value = mean
    return _OPS[op](value, assertion.bound)
