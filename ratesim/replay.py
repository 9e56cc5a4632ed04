"""Replay a request table through any store, and compare two replays decision by decision.

``replay(requests, limiter, store)`` feeds a table of requests (``time_us``, ``key`` and an
optional ``cost``) to ``store.acquire`` in row order and returns one decision row per request.
With a store that has ``acquire_many`` (``RedisStore``) the rows go in pipelined batches: the
same decisions, one round trip per batch. ``replay(requests, policy, store)`` does the same for a
whole :class:`~ratesim.policy.PolicySpec` (a table of ``time_us``, ``user``, ``tier``, ``route``,
``cost``; see :func:`replay_policy`), with the engine's per-layer outcome columns.
``compare(a, b)`` says whether two replays decided identically and, if not, where they first
differ and how often each field differs.

Typical use: tune a limiter or a policy against ``MemoryStore`` (or in the simulator), replay the
same table against ``RedisStore(time_source="client")``, and check ``compare(a, b).identical``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .algorithms.base import MAX_EXACT_INT, Algorithm, Decision
from .outcomes import (
    ALLOWED,
    FAIL_CLOSED,
    FAIL_OPEN,
    OUTCOMES,
    REJECTED,
    SHADOW_REJECTED,
)
from .policy import (
    BACKEND_KINDS,
    PolicySpec,
    build_tier_algorithms,
    layer_applies,
    request_fields,
    state_key,
)

#: Columns of a decision row, in order (after the request's own columns).
DECISION_COLUMNS = ("allowed", "limit", "remaining", "retry_after_us", "reset_after_us", "outcome")


def _row(requests: pd.DataFrame, pos: int) -> str:
    return f"row {_plain(requests.index[pos])!r} (position {pos})"


def _int_column(requests: pd.DataFrame, name: str, *, minimum: int | None = None) -> list[int]:
    """Column ``name`` as Python ints; ``ValueError`` naming the first bad row otherwise.

    Integer dtypes pass as is. Float or object columns pass only if every value is an integer
    (a float must be integral and below 2**53 in magnitude: larger ones are not exact).
    """
    col = requests[name]
    if pd.api.types.is_integer_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = [int(v) for v in col.to_numpy()]
    else:
        values = []
        for pos, v in enumerate(col.tolist()):
            if isinstance(v, bool | np.bool_):
                ok = False
            elif isinstance(v, int | np.integer):
                ok = True
            elif isinstance(v, float | np.floating):
                ok = (
                    bool(np.isfinite(v)) and float(v).is_integer() and abs(float(v)) < MAX_EXACT_INT
                )
            else:
                ok = False
            if not ok:
                raise ValueError(
                    f"requests column {name!r} must hold integers; {_row(requests, pos)} has {v!r}"
                )
            values.append(int(v))
    if minimum is not None:
        for pos, v in enumerate(values):
            if v < minimum:
                raise ValueError(
                    f"requests column {name!r} must be >= {minimum}; {_row(requests, pos)} "
                    f"has {v!r}"
                )
    return values


def _validated(requests: object) -> tuple[list[int], list[Any], list[int]]:
    if not isinstance(requests, pd.DataFrame):
        raise ValueError(f"requests must be a pandas DataFrame, got {type(requests).__name__}")
    for name in ("time_us", "key"):
        if name not in requests.columns:
            raise ValueError(
                f"requests is missing column {name!r} (has {list(requests.columns)!r})"
            )
    times = _int_column(requests, "time_us")
    keys = requests["key"].tolist()
    for pos, k in enumerate(keys):
        if k is None or (isinstance(k, float) and k != k):
            raise ValueError(f"requests column 'key' has no key in {_row(requests, pos)}")
        if isinstance(k, np.integer):
            keys[pos] = int(k)
    if "cost" in requests.columns:
        costs = _int_column(requests, "cost", minimum=0)
    else:
        costs = [1] * len(requests)
    return times, keys, costs


def _resolve(limiter: object) -> Algorithm:
    if isinstance(limiter, Algorithm):
        return limiter
    build = getattr(limiter, "build", None)
    if callable(build):  # an algorithm spec from ratesim.policy
        built = build()
        if isinstance(built, Algorithm):
            return built
    raise ValueError(
        f"limiter must be a ratesim Algorithm (or a spec with .build()), got {limiter!r}"
    )


def _check_batch_and_store(batch: object, store: Any) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    if getattr(store, "time_source", "client") != "client":
        raise ValueError(
            "replay needs a store that takes the caller's time (time_source='client'), got "
            f"time_source={store.time_source!r}"
        )
    holds_state = getattr(store, "holds_state", None)
    if callable(holds_state) and holds_state():
        prefix = getattr(store, "prefix", "")
        warnings.warn(
            f"the store already holds keys under prefix {prefix!r} (an earlier replay?): this "
            "replay decides from that state, not from empty, so it will not match a fresh run; "
            "use RedisStore(..., prefix=ratesim.stores.redis_store.fresh_prefix()) for a fresh one",
            UserWarning,
            stacklevel=3,
        )


def replay(
    requests: pd.DataFrame, limiter_or_policy: Any, store: Any, *, batch: int = 1000
) -> pd.DataFrame:
    """Decide every request of ``requests`` on ``store``, in row order.

    With an algorithm (an :class:`~ratesim.algorithms.base.Algorithm`, or a spec with
    ``.build()``): ``requests`` has columns ``time_us`` (integer microseconds of the caller's
    clock), ``key`` (str or int) and optionally ``cost`` (int >= 0, default 1). Returns a
    DataFrame with the same index and the columns ``time_us, key, cost`` followed by
    :data:`DECISION_COLUMNS`.

    With a :class:`~ratesim.policy.PolicySpec`: see :func:`replay_policy` (columns ``time_us``,
    ``user``, ``tier``, ``route``, ``cost``; one row per request with ``admitted``,
    ``rejected_by`` and a ``layer:<name>`` outcome per layer).

    ``batch`` is the number of requests per round trip for stores with ``acquire_many``. A store
    deciding on its own clock (``RedisStore(time_source="redis")``) cannot replay a table: that
    is a ``ValueError``.
    """
    if isinstance(limiter_or_policy, PolicySpec):
        return replay_policy(requests, limiter_or_policy, store, batch=batch)
    algo = _resolve(limiter_or_policy)
    times, keys, costs = _validated(requests)
    _check_batch_and_store(batch, store)
    decisions: list[Decision]
    if hasattr(store, "acquire_many"):
        decisions = store.acquire_many(algo, keys, times, costs, batch=batch)
    else:
        decisions = [
            store.acquire(algo, k, t, c) for k, t, c in zip(keys, times, costs, strict=True)
        ]
    out = pd.DataFrame(
        {
            "time_us": np.asarray(times, dtype=np.int64),
            "key": keys,
            "cost": np.asarray(costs, dtype=np.int64),
            "allowed": np.fromiter((d.allowed for d in decisions), dtype=bool, count=len(times)),
            "limit": np.fromiter((d.limit for d in decisions), dtype=np.int64, count=len(times)),
            "remaining": np.fromiter(
                (d.remaining for d in decisions), dtype=np.int64, count=len(times)
            ),
            "retry_after_us": np.fromiter(
                (d.retry_after_us for d in decisions), dtype=np.int64, count=len(times)
            ),
            "reset_after_us": np.fromiter(
                (d.reset_after_us for d in decisions), dtype=np.int64, count=len(times)
            ),
            "outcome": [d.outcome for d in decisions],
        },
        index=requests.index,
    )
    return out


# --- policies -------------------------------------------------------------------------------

#: The request attributes a policy's layers may read (besides time and cost).
POLICY_FIELDS = ("user", "tier", "route")
#: Columns of a policy replay after the request's own and the per-layer ``layer:<name>`` ones.
POLICY_COLUMNS = ("admitted", "rejected_by", "decided_by", "remaining", "retry_after_us")


@dataclass
class _PolicyTable:
    """A validated request table for a policy replay: one entry per row."""

    times: list[int]
    costs: list[int]
    fields: dict[str, list[Any]]  # only the attributes some layer reads


def _field_values(requests: pd.DataFrame, name: str) -> list[Any]:
    """``user`` as int or str, ``tier`` / ``route`` as str; ``ValueError`` naming the row."""
    values = requests[name].tolist()
    for pos, v in enumerate(values):
        if isinstance(v, np.integer):
            v = values[pos] = int(v)
        if name == "user" and isinstance(v, int) and not isinstance(v, bool):
            continue
        if isinstance(v, str) and v != "":
            continue
        kind = "an int or a non-empty str" if name == "user" else "a non-empty str"
        raise ValueError(
            f"requests column {name!r} must hold {kind}; {_row(requests, pos)} has {v!r}"
        )
    return values


def _policy_table(requests: object, policy: PolicySpec) -> _PolicyTable:
    if not isinstance(requests, pd.DataFrame):
        raise ValueError(f"requests must be a pandas DataFrame, got {type(requests).__name__}")
    if "time_us" not in requests.columns:
        raise ValueError(f"requests is missing column 'time_us' (has {list(requests.columns)!r})")
    times = _int_column(requests, "time_us")
    costs = (
        _int_column(requests, "cost", minimum=0)
        if "cost" in requests.columns
        else [1] * len(requests)
    )
    fields: dict[str, list[Any]] = {}
    for layer in policy.layers:
        for name in request_fields(layer):
            if name in fields:
                continue
            if name not in requests.columns:
                raise ValueError(
                    f"requests is missing column {name!r}, which layer {layer.name!r} needs "
                    f"(key {layer.key!r}, tiers {sorted(layer.tiers)!r}, routes "
                    f"{layer.routes!r}); has {list(requests.columns)!r}"
                )
            fields[name] = _field_values(requests, name)
    return _PolicyTable(times, costs, fields)


def _check_policy(policy: PolicySpec) -> None:
    for layer in policy.layers:
        if layer.algorithm.kind in BACKEND_KINDS:
            raise ValueError(
                f"policy layer {layer.name!r} is a {layer.algorithm.kind} layer: it acts on "
                "backend completions, which a replay does not have; replay the policy without it"
            )


def _decide(
    store: Any, algs: list[Any], keys: list[str], times: list[int], costs: list[int], batch: int
) -> list[Decision]:
    """One decision per request (request ``j`` on algorithm ``algs[j]``), as sequential
    ``store.acquire`` calls in order would give.

    With ``acquire_many`` the requests go in one pipelined stream per distinct algorithm: two
    algorithms never share a store key (a key is per algorithm on every store), so only the
    order within each algorithm matters, and ``acquire_many`` keeps it.
    """
    if not hasattr(store, "acquire_many"):
        return [
            store.acquire(a, k, t, c) for a, k, t, c in zip(algs, keys, times, costs, strict=True)
        ]
    groups: dict[Any, list[int]] = {}
    for j, a in enumerate(algs):
        groups.setdefault(a, []).append(j)
    out: list[Decision | None] = [None] * len(keys)
    for alg, idx in groups.items():
        got = store.acquire_many(
            alg, [keys[j] for j in idx], [times[j] for j in idx], [costs[j] for j in idx],
            batch=batch,
        )  # fmt: skip
        for j, d in zip(idx, got, strict=True):
            out[j] = d
    return out  # type: ignore[return-value]  # every slot was filled above


def _outcome(d: Decision, shadow: bool) -> int:
    """The engine's outcome code for one layer decision (a store failure keeps its verdict)."""
    if d.outcome == "limiter":
        if d.allowed:
            return ALLOWED
        return SHADOW_REJECTED if shadow else REJECTED
    return FAIL_OPEN if d.allowed else FAIL_CLOSED


def replay_policy(
    requests: pd.DataFrame, policy: PolicySpec, store: Any, *, batch: int = 1000
) -> pd.DataFrame:
    """Decide every request of ``requests`` through the layers of ``policy`` on ``store``.

    ``requests`` has columns ``time_us`` (integer microseconds), ``cost`` (optional, int >= 0,
    default 1) and whichever of ``user`` (int or str), ``tier`` and ``route`` (str) a layer
    reads (its key template, its tier overrides, its ``routes`` filter); a missing one is a
    ``ValueError`` naming the column and the layer.

    Semantics (those of the engine's oracle, :func:`ratesim.oracle.run_oracle`):

    * Layers run in policy order on the one ``store``. A replay has no gateway nodes, network
      or Redis model: a ``node`` layer is one state for the whole site, like a ``global`` one,
      and every layer decides at the row's ``time_us`` (the layer's ``time_source``,
      ``timeout_ms``, ``failure_mode``, ``local_share`` and ``drift_guard_ms`` are not used; a
      ``RedisStore``'s own ``failure_mode`` decides when Redis cannot).
    * A layer's state key is :func:`ratesim.policy.state_key` (the layer name, the rendered
      key template, and the tier when the layer has tier overrides), so two layers never share
      state; each tier runs its own algorithm (:func:`ratesim.policy.build_tier_algorithms`).
    * A request rejected by an ``enforce`` layer is not seen by later layers; a ``shadow``
      layer records ``shadow_rejected`` and rejects nothing; a layer with ``routes`` only sees
      requests on those routes (``not_reached`` otherwise).
    * A store failure decision is ``fail_open`` when it allowed the request and
      ``fail_closed`` otherwise (which rejects in an enforce layer).

    Returns a DataFrame with the index of ``requests``: ``time_us``, the request attributes
    given (``user``, ``tier``, ``route``), ``cost``, one ``layer:<name>`` column per layer
    (categories :data:`ratesim.results.OUTCOMES`, as in ``Result.requests``), then
    :data:`POLICY_COLUMNS`: ``admitted``, ``rejected_by`` (layer name or ``None``),
    ``decided_by`` (the rejecting layer; for an admitted request the enforce layer that allowed
    it with the fewest ``remaining``, i.e. the binding limit; ``None`` when no enforce layer
    allowed it), and that layer's ``remaining`` and ``retry_after_us`` (-1 without one).

    Evaluation is layer by layer: layer ``k`` decides, in row order, the requests no earlier
    enforce layer rejected. That equals request-by-request evaluation, because a layer's
    decisions depend only on its own state (keys never shared between layers) and on which
    requests reach it, which earlier layers fix. So a ``RedisStore`` gets one pipelined stream
    (``acquire_many``) per layer and algorithm.
    """
    if not isinstance(policy, PolicySpec):
        raise ValueError(f"policy must be a ratesim PolicySpec, got {type(policy).__name__}")
    _check_policy(policy)
    table = _policy_table(requests, policy)
    _check_batch_and_store(batch, store)
    n, n_layers = len(table.times), len(policy.layers)
    outcomes = np.zeros((n, n_layers), dtype=np.int8)
    remaining = np.full((n, n_layers), -1, dtype=np.int64)
    retry = np.full((n, n_layers), -1, dtype=np.int64)
    rejected_by = np.full(n, -1, dtype=np.int64)
    users = table.fields.get("user")
    tiers = table.fields.get("tier")
    routes = table.fields.get("route")
    tier_names = tuple(dict.fromkeys(tiers)) if tiers is not None else ("",)
    tier_code = {t: c for c, t in enumerate(tier_names)}
    for pos, layer in enumerate(policy.layers):
        todo = [
            i
            for i in range(n)
            if rejected_by[i] < 0 and (routes is None or layer_applies(layer, routes[i]))
        ]
        built = build_tier_algorithms(layer, tier_names)
        algs = [built[tier_code[tiers[i]]] if tiers is not None else built[0] for i in todo]
        keys = [
            state_key(
                layer,
                users[i] if users is not None else "",
                tiers[i] if tiers is not None else "",
                routes[i] if routes is not None else "",
            )
            for i in todo
        ]
        decisions = _decide(
            store, algs, keys, [table.times[i] for i in todo], [table.costs[i] for i in todo], batch
        )
        shadow = layer.mode == "shadow"
        for i, d in zip(todo, decisions, strict=True):
            code = _outcome(d, shadow)
            outcomes[i, pos] = code
            remaining[i, pos] = d.remaining
            retry[i, pos] = d.retry_after_us
            if code in (REJECTED, FAIL_CLOSED) and not shadow:
                rejected_by[i] = pos
    return _policy_frame(requests, table, policy, outcomes, remaining, retry, rejected_by)


def _deciding_layer(
    outcomes: np.ndarray, remaining: np.ndarray, rejected_by: np.ndarray, enforce: np.ndarray
) -> np.ndarray:
    """Per request the deciding layer's position (-1: none), see :func:`replay_policy`."""
    allowed_here = (outcomes == ALLOWED) & enforce[np.newaxis, :]
    big = np.iinfo(np.int64).max
    masked = np.where(allowed_here, remaining, big)
    binding = np.where(allowed_here.any(axis=1), np.argmin(masked, axis=1), -1)
    return np.where(rejected_by >= 0, rejected_by, binding)


def _policy_frame(
    requests: pd.DataFrame,
    table: _PolicyTable,
    policy: PolicySpec,
    outcomes: np.ndarray,
    remaining: np.ndarray,
    retry: np.ndarray,
    rejected_by: np.ndarray,
) -> pd.DataFrame:
    n = len(table.times)
    names = [layer.name for layer in policy.layers]
    enforce = np.array([layer.mode == "enforce" for layer in policy.layers], dtype=bool)
    cols: dict[str, Any] = {"time_us": np.asarray(table.times, dtype=np.int64)}
    for name in POLICY_FIELDS:
        if name in requests.columns:
            cols[name] = requests[name]  # the caller's values and dtype, on the same index
    cols["cost"] = np.asarray(table.costs, dtype=np.int64)
    for pos, name in enumerate(names):
        cols[f"layer:{name}"] = pd.Categorical.from_codes(
            outcomes[:, pos].astype(np.int64), pd.Index(OUTCOMES)
        )
    label = np.array([*names, None], dtype=object)  # position -1 reads the trailing None
    decider = _deciding_layer(outcomes, remaining, rejected_by, enforce)
    rows = np.arange(n)
    cols["admitted"] = rejected_by < 0
    # object dtype keeps None (pandas would infer a string dtype and turn None into NaN)
    cols["rejected_by"] = pd.Series(label[rejected_by], dtype=object, index=requests.index)
    cols["decided_by"] = pd.Series(label[decider], dtype=object, index=requests.index)
    has = decider >= 0
    cols["remaining"] = np.where(has, remaining[rows, np.maximum(decider, 0)], -1)
    cols["retry_after_us"] = np.where(has, retry[rows, np.maximum(decider, 0)], -1)
    return pd.DataFrame(cols, index=requests.index)


@dataclass(frozen=True)
class CompareReport:
    """Where two replays of the same requests disagree.

    ``differences`` counts, per decision column, the rows whose values differ;
    ``differing_rows`` counts rows with any difference. ``first_position`` is the position (0-based
    row number) of the first differing request, ``first_a`` / ``first_b`` its row in each replay
    (``None`` when identical).
    """

    n: int
    identical: bool
    differing_rows: int
    differences: dict[str, int] = field(default_factory=dict)
    first_position: int | None = None
    first_a: dict[str, Any] | None = None
    first_b: dict[str, Any] | None = None

    def __str__(self) -> str:
        if self.identical:
            return f"identical: {self.n} decisions"
        per_col = ", ".join(f"{c} {k}" for c, k in self.differences.items() if k)
        return (
            f"{self.differing_rows} of {self.n} decisions differ ({per_col}); "
            f"first at request {self.first_position}:\n"
            f"  a: {self.first_a}\n"
            f"  b: {self.first_b}"
        )


def _is_policy_replay(df: pd.DataFrame) -> bool:
    return "admitted" in df.columns and "allowed" not in df.columns


def _compared_columns(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """The decision columns both replays must agree on (``ValueError`` if they cannot)."""
    for name, df in (("a", a), ("b", b)):
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"{name} must be a DataFrame from replay(), got {type(df).__name__}")
    if _is_policy_replay(a) != _is_policy_replay(b):
        raise ValueError("a and b must both be algorithm replays or both policy replays")
    if not _is_policy_replay(a):
        for name, df in (("a", a), ("b", b)):
            for col in DECISION_COLUMNS:
                if col not in df.columns:
                    raise ValueError(f"{name} is missing decision column {col!r}")
        return list(DECISION_COLUMNS)
    for name, df in (("a", a), ("b", b)):
        if "rejected_by" not in df.columns:
            raise ValueError(f"{name} is missing decision column 'rejected_by'")
    layers_a = [c for c in a.columns if str(c).startswith("layer:")]
    layers_b = [c for c in b.columns if str(c).startswith("layer:")]
    if layers_a != layers_b:
        raise ValueError(f"a and b have different layers: {layers_a!r} vs {layers_b!r}")
    extra = [c for c in POLICY_COLUMNS[2:] if c in a.columns and c in b.columns]
    return ["admitted", "rejected_by", *layers_a, *extra]


def _column(df: pd.DataFrame, col: str) -> np.ndarray:
    # Categoricals with different category lists only compare as plain values.
    s = df[col]
    return np.asarray(s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> CompareReport:
    """Compare two replays row by row (by position).

    Algorithm replays are compared on :data:`DECISION_COLUMNS`. Policy replays (and a
    ``Result.requests`` table of the engine, which has the same columns) on ``admitted``,
    ``rejected_by`` and every ``layer:<name>`` outcome, plus ``decided_by``, ``remaining`` and
    ``retry_after_us`` when both tables have them. Two missing values (``None``/NaN) are equal.
    """
    columns = _compared_columns(a, b)
    if len(a) != len(b):
        raise ValueError(f"a and b must decide the same requests: {len(a)} rows vs {len(b)}")
    any_diff = np.zeros(len(a), dtype=bool)
    differences: dict[str, int] = {}
    for col in columns:
        x, y = _column(a, col), _column(b, col)
        diff = (x != y) & ~(pd.isna(x) & pd.isna(y))
        differences[col] = int(diff.sum())
        any_diff |= diff
    if not any_diff.any():
        return CompareReport(len(a), True, 0, differences)
    first = int(np.argmax(any_diff))
    return CompareReport(
        len(a),
        False,
        int(any_diff.sum()),
        differences,
        first,
        {str(k): _plain(v) for k, v in a.iloc[first].to_dict().items()},
        {str(k): _plain(v) for k, v in b.iloc[first].to_dict().items()},
    )


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
