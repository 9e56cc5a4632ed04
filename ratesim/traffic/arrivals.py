"""The arrivals of a run: one row per request, as numpy arrays sorted by time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

_DTYPES = {
    "time_us": np.int64,
    "user": np.int64,
    "tier": np.int8,
    "route": np.int16,
    "cost": np.int64,
    "abusive": np.bool_,
}


def categorical(codes: np.ndarray, names: Sequence[str]) -> pd.Categorical[str]:
    """A categorical column from integer codes into ``names``."""
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=pd.Index(list(names)))


@dataclass(frozen=True, eq=False)
class Arrivals:
    """Requests sorted by ``time_us`` (ties allowed, in generation order).

    ``time_us`` is the true arrival time in integer microseconds from the run start; ``user``
    a user code (``user_names[code]`` when the users have names, as in a trace); ``tier`` and
    ``route`` codes into ``tier_names`` and ``route_names``; ``cost`` (>= 1) the tokens the
    request takes; ``abusive`` marks scrapers. Arrays are coerced to the documented dtypes.
    """

    time_us: np.ndarray
    user: np.ndarray
    tier: np.ndarray
    route: np.ndarray
    cost: np.ndarray
    abusive: np.ndarray
    tier_names: tuple[str, ...]
    route_names: tuple[str, ...]
    user_names: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        n = None
        for name, dtype in _DTYPES.items():
            arr: np.ndarray = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            if arr.ndim != 1:
                raise ValueError(f"Arrivals.{name} must be one-dimensional, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ValueError(f"Arrivals.{name} has {arr.shape[0]} rows, time_us has {n}")
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "tier_names", tuple(self.tier_names))
        object.__setattr__(self, "route_names", tuple(self.route_names))
        if self.user_names is not None:
            object.__setattr__(self, "user_names", tuple(self.user_names))
        if n and np.any(self.time_us[1:] < self.time_us[:-1]):
            raise ValueError("Arrivals.time_us must be sorted (non-decreasing)")
        if n and int(self.cost.min()) < 1:
            raise ValueError(f"Arrivals.cost must be >= 1, got {int(self.cost.min())}")

    def __len__(self) -> int:
        return int(self.time_us.shape[0])

    @classmethod
    def empty(
        cls,
        tier_names: Sequence[str],
        route_names: Sequence[str],
        user_names: Sequence[str] | None = None,
    ) -> Arrivals:
        """No requests, with the given code tables."""
        z = np.zeros(0, dtype=np.int64)
        names = tuple(user_names) if user_names is not None else None
        return cls(z, z, z, z, z, z, tuple(tier_names), tuple(route_names), names)

    @classmethod
    def concat(cls, parts: Sequence[Arrivals]) -> Arrivals:
        """Join consecutive chunks (same code tables; each part later than the one before)."""
        if not parts:
            raise ValueError("Arrivals.concat needs at least one part, got none")
        first = parts[0]
        for p in parts[1:]:
            same = (p.tier_names, p.route_names, p.user_names) == (
                first.tier_names,
                first.route_names,
                first.user_names,
            )
            if not same:
                raise ValueError("Arrivals.concat: parts have different code tables")
        cols = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _DTYPES}
        return cls(
            **cols,
            tier_names=first.tier_names,
            route_names=first.route_names,
            user_names=first.user_names,
        )

    def between(self, start_us: int, end_us: int) -> Arrivals:
        """The requests with ``start_us <= time_us < end_us``."""
        lo, hi = np.searchsorted(self.time_us, [start_us, end_us], side="left")
        return self.take(slice(int(lo), int(hi)))

    def take(self, index: slice | np.ndarray) -> Arrivals:
        """A subset of rows (a slice, or an index / mask that keeps time order)."""
        cols = {name: getattr(self, name)[index] for name in _DTYPES}
        return Arrivals(
            **cols,
            tier_names=self.tier_names,
            route_names=self.route_names,
            user_names=self.user_names,
        )

    def equals(self, other: Arrivals) -> bool:
        """True when every array and code table is identical."""
        if (self.tier_names, self.route_names, self.user_names) != (
            other.tier_names,
            other.route_names,
            other.user_names,
        ):
            return False
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _DTYPES)

    def to_frame(self) -> pd.DataFrame:
        """One row per request: ``time_us``, ``user``, ``tier`` and ``route`` (categoricals),
        ``cost``, ``abusive``, plus ``user_name`` (categorical) when users have names."""
        data: dict[str, object] = {
            "time_us": self.time_us,
            "user": self.user,
            "tier": categorical(self.tier, self.tier_names),
            "route": categorical(self.route, self.route_names),
            "cost": self.cost,
            "abusive": self.abusive,
        }
        if self.user_names is not None:
            data["user_name"] = categorical(self.user, self.user_names)
        return pd.DataFrame(data)
