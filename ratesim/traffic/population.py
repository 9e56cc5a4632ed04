"""The user population: Zipf popularity, tiers, scrapers, routes and their costs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ..rng import Streams
from .arrivals import categorical
from .pick import guide_table, pick_guided
from .specs import PopulationSpec


@dataclass(frozen=True, eq=False)
class Population:
    """A drawn population: per-user ``weight`` (Zipf x scraper factor, not normalised),
    ``tier`` codes and ``abusive`` flags; per-route weights and costs."""

    weight: np.ndarray
    tier: np.ndarray
    abusive: np.ndarray
    tier_names: tuple[str, ...]
    route_names: tuple[str, ...]
    route_weight: np.ndarray
    route_cost: np.ndarray

    @property
    def users(self) -> int:
        """How many users."""
        return int(self.weight.shape[0])

    def pick_users(self, u: np.ndarray) -> np.ndarray:
        """User codes for uniforms ``u`` in [0, 1), in proportion to ``weight``."""
        return pick_guided(self._user_cum, self._user_guide, u)

    def pick_routes(self, u: np.ndarray) -> np.ndarray:
        """Route codes for uniforms ``u`` in [0, 1), in proportion to ``route_weight``."""
        return pick_by_weight(self._route_cum, u).astype(np.int16)

    @cached_property
    def _user_cum(self) -> np.ndarray:
        return np.cumsum(self.weight)

    @cached_property
    def _user_guide(self) -> np.ndarray:
        return guide_table(self._user_cum)

    @cached_property
    def _route_cum(self) -> np.ndarray:
        return np.cumsum(self.route_weight)


def pick_by_weight(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn by inverse CDF from cumulative weights ``cum`` and uniforms ``u`` in
    [0, 1); zero-weight entries are never chosen. (A binary search per draw: the naive
    reference of :func:`~ratesim.traffic.pick.pick_guided`, and what small tables use.)"""
    idx = np.searchsorted(cum, u * cum[-1], side="right")
    return np.minimum(idx, len(cum) - 1)


def draw_tiers(spec: PopulationSpec, u: np.ndarray) -> np.ndarray:
    """Tier codes (``int8``, in the order of ``spec.tiers``) for uniforms ``u``."""
    shares = np.fromiter(spec.tiers.values(), dtype=np.float64, count=len(spec.tiers))
    return pick_by_weight(np.cumsum(shares), u).astype(np.int8)


def build_population(spec: PopulationSpec, streams: Streams) -> Population:
    """Draw the population from a fresh ``"population"`` stream: first one uniform per user
    for the tier, then the scrapers (``round(abusive_share * users)`` users without
    replacement). The result depends only on ``spec`` and the seed."""
    rng = streams.fresh("population")
    n = spec.users
    tier = draw_tiers(spec, rng.random(n))
    n_abusive = int(np.floor(spec.abusive_share * n + 0.5))
    abusive = np.zeros(n, dtype=np.bool_)
    if n_abusive:
        abusive[rng.choice(n, size=n_abusive, replace=False)] = True
    weight = np.arange(1, n + 1, dtype=np.float64) ** -spec.zipf_s
    weight[abusive] *= spec.abusive_weight
    route_names = tuple(spec.routes)
    return Population(
        weight=weight,
        tier=tier,
        abusive=abusive,
        tier_names=tuple(spec.tiers),
        route_names=route_names,
        route_weight=np.fromiter(spec.routes.values(), dtype=np.float64, count=len(route_names)),
        route_cost=np.array([spec.route_cost.get(r, 1) for r in route_names], dtype=np.int64),
    )


def population_table(population: PopulationSpec, streams: Streams) -> pd.DataFrame:
    """One row per user: ``user``, ``tier`` (categorical), ``weight`` (Zipf weight times the
    scraper factor), ``abusive``, and ``share`` (the expected share of requests)."""
    pop = build_population(population, streams)
    return pd.DataFrame(
        {
            "user": np.arange(pop.users, dtype=np.int64),
            "tier": categorical(pop.tier, pop.tier_names),
            "weight": pop.weight,
            "abusive": pop.abusive,
            "share": pop.weight / pop.weight.sum(),
        }
    )
