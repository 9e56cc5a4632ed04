"""The assertions of a suite, and how each is checked over a scenario's replications.

Three forms, each written as an item of an ``assertions`` list:

* ``<metric> <op> <number>`` (:mod:`ratesim.validate.assertions`): ``over_admitted_pct < 1``,
  ``p99_decision_latency_ms < 12``, ``first_trip(site_orders) > 9``. Checked on the Student-t
  confidence bound of the mean over replications: the upper bound for ``<``/``<=``, the lower
  for ``>``/``>=``. Replications where a ``first_trip`` layer never trips are left out of its
  mean (all never: NaN, which passes ``>`` and ``>=`` only).
* ``never_engages: [layer, ...]`` (a mapping, or the same as one string): per layer, ``trips:<layer> <= 0`` on the upper bound, i.e.
  the layer's limit says no to no request in any replication.
* ``degradation_order == [a, b, ...]`` (or ``degradation_order: [a, b]``): the layers that give
  way (trip: reject, shadow-reject or reject locally) are exactly these, and each trips after
  the one before it: per replication the gap ``first_trip(b) - first_trip(a)`` (seconds; a
  layer that does not trip in that replication counts as tripping at the end of the run), its
  confidence interval's lower bound > 0 for every consecutive pair.

Each check gives :class:`Outcome` rows: the assertion as written, the metric column, mean,
bounds, passed and a detail sentence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..experiments.stats import ci_name, summarize
from .assertions import Assertion, AssertionSyntaxError, check, parse_assertion

__all__ = [
    "Comparison",
    "DegradationOrder",
    "NeverEngages",
    "Outcome",
    "Rule",
    "RuleSyntaxError",
    "parse_rule",
]

_NAME = re.compile(r"^[\w.\-]+$")
_ORDER = re.compile(r"^\s*degradation_order\s*==\s*\[(?P<body>[^\[\]]*)\]\s*$")
_NEVER = re.compile(r"^\s*never_engages\s*:\s*\[(?P<body>[^\[\]]*)\]\s*$")


class RuleSyntaxError(ValueError):
    """An assertion item that is none of the forms in the module docstring."""


@dataclass(frozen=True)
class Outcome:
    """One checked row: ``metric`` is the column (or derived quantity) the bounds are of."""

    assertion: str
    metric: str
    mean: float
    ci_low: float
    ci_high: float
    passed: bool
    detail: str


@dataclass(frozen=True)
class Context:
    """What a rule is checked against: the runs (one row per replication, metric columns), the
    policy's layer names, the confidence level and the run's duration (s)."""

    runs: pd.DataFrame
    layers: list[str]
    confidence: float
    duration_s: float


def _interval(values: pd.Series | np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Mean and Student-t bounds (:func:`ratesim.experiments.summarize`) of one column."""
    frame = pd.DataFrame({"v": np.asarray(values, dtype=float)})
    row = summarize(frame, by=[], confidence=confidence).iloc[0]
    ci = ci_name(confidence)
    return float(row["v_mean"]), float(row[f"v_{ci}_low"]), float(row[f"v_{ci}_high"])


def _fmt(x: float) -> str:
    return "NaN" if math.isnan(x) else f"{x:.4g}"


class Rule:
    """An assertion of a suite: ``text`` as written, the metric columns it reads."""

    text: str

    def columns(self) -> list[str]:
        """The metric columns (or layer names, as ``trips:<layer>``) this rule reads."""
        raise NotImplementedError

    def evaluate(self, ctx: Context) -> list[Outcome]:
        """The checked rows of this rule over ``ctx.runs``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Comparison(Rule):
    """``<metric> <op> <number>`` on the confidence bound."""

    assertion: Assertion

    @property
    def text(self) -> str:  # type: ignore[override]
        return self.assertion.text

    def columns(self) -> list[str]:
        return [self.assertion.metric]

    def evaluate(self, ctx: Context) -> list[Outcome]:
        a = self.assertion
        mean, low, high = _interval(ctx.runs[a.metric], ctx.confidence)
        ok = check(a, mean, low, high)
        if math.isnan(mean):
            detail = "never happened in any replication (NaN)"
        elif a.op in ("<", "<="):
            detail = f"upper {ctx.confidence:.0%} bound {_fmt(high)} vs {a.op} {a.bound:g}"
        elif a.op in (">", ">="):
            detail = f"lower {ctx.confidence:.0%} bound {_fmt(low)} vs {a.op} {a.bound:g}"
        else:
            detail = f"mean {_fmt(mean)} vs {a.op} {a.bound:g}"
        return [Outcome(a.text, a.metric, mean, low, high, ok, detail)]


@dataclass(frozen=True)
class NeverEngages(Rule):
    """``never_engages: [layers]``: each layer trips on no request in any replication."""

    text: str
    layers: tuple[str, ...]

    def columns(self) -> list[str]:
        return [f"trips:{name}" for name in self.layers]

    def evaluate(self, ctx: Context) -> list[Outcome]:
        rows = []
        for name in self.layers:
            col = f"trips:{name}"
            values = ctx.runs[col].to_numpy(dtype=float)
            mean, low, high = _interval(values, ctx.confidence)
            ok = check(Assertion(self.text, col, "<=", 0.0), mean, low, high)
            hit = int((values > 0).sum())
            detail = f"{name} trips in {hit} of {len(values)} replications (mean {_fmt(mean)})"
            rows.append(Outcome(f"never_engages: [{name}]", col, mean, low, high, ok, detail))
        return rows


@dataclass(frozen=True)
class DegradationOrder(Rule):
    """``degradation_order == [a, b, ...]`` (see the module docstring)."""

    text: str
    layers: tuple[str, ...]

    def columns(self) -> list[str]:
        return [f"first_trip_s:{name}" for name in self.layers]

    def evaluate(self, ctx: Context) -> list[Outcome]:
        runs = ctx.runs
        times = {
            n: runs[f"first_trip_s:{n}"].to_numpy(dtype=float) for n in ctx.layers
        }  # NaN: never tripped in that replication
        tripping = [n for n in ctx.layers if not np.isnan(times[n]).all()]
        seen = sorted(tripping, key=lambda n: float(np.nanmean(times[n])))
        observed = ", ".join(f"{n} {np.nanmean(times[n]):.3g} s" for n in seen) or "none"
        problems = [f"{n} never trips" for n in self.layers if n not in tripping]
        problems += [f"{n} also trips" for n in seen if n not in self.layers]
        pairs = []  # (bound checked, mean, low, high) per consecutive pair
        for a, b in zip(self.layers, self.layers[1:], strict=False):
            end = ctx.duration_s
            t_a = np.where(np.isnan(times[a]), end, times[a])
            t_b = np.where(np.isnan(times[b]), end, times[b])
            mean, low, high = _interval(t_b - t_a, ctx.confidence)
            bound = mean if math.isnan(low) else low  # one replication: no interval
            pairs.append((bound, mean, low, high))
            if not bound > 0:
                problems.append(f"{b} does not trip after {a} (gap lower bound {_fmt(bound)} s)")
        _, mean, low, high = min(pairs) if pairs else (0.0, math.nan, math.nan, math.nan)
        ok = not problems
        detail = f"observed (mean first trip): {observed}"
        if problems:
            detail += "; " + "; ".join(problems)
        metric = "first_trip gap (s)" if len(self.layers) > 1 else "degradation_order"
        return [Outcome(self.text, metric, mean, low, high, ok, detail)]


def _layer_list(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [p.strip() for p in value.split(",") if p.strip()]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and _NAME.match(v) for v in value)
    ):
        raise RuleSyntaxError(f"{what}: expected a non-empty list of layer names, got {value!r}")
    if len(set(value)) != len(value):
        raise RuleSyntaxError(f"{what}: names a layer twice: {value!r}")
    return tuple(value)


def parse_rule(item: Any) -> Rule:
    """An assertion item (a string or a one-key mapping) as a :class:`Rule`."""
    if isinstance(item, Mapping):
        if len(item) != 1:
            raise RuleSyntaxError(
                f"assertion {dict(item)!r}: a mapping must have one key, never_engages or "
                "degradation_order"
            )
        ((key, value),) = item.items()
        if key == "never_engages":
            return NeverEngages(f"never_engages: {value}", _layer_list(value, "never_engages"))
        if key == "degradation_order":
            layers = _layer_list(value, "degradation_order")
            return DegradationOrder(f"degradation_order == [{', '.join(layers)}]", layers)
        raise RuleSyntaxError(f"assertion key {key!r}: expected never_engages or degradation_order")
    if not isinstance(item, str):
        raise RuleSyntaxError(f"assertion {item!r}: expected a string or a one-key mapping")
    match = _NEVER.match(item)  # the mapping form, quoted as one string
    if match:
        return NeverEngages(item.strip(), _layer_list(match["body"], "never_engages"))
    match = _ORDER.match(item)
    if match:
        return DegradationOrder(item.strip(), _layer_list(match["body"], "degradation_order"))
    if item.strip().startswith("degradation_order"):
        raise RuleSyntaxError(f"assertion {item!r}: expected 'degradation_order == [a, b, ...]'")
    try:
        return Comparison(parse_assertion(item))
    except AssertionSyntaxError as exc:
        raise RuleSyntaxError(str(exc)) from None
