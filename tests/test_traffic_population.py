"""The population: Zipf popularity, tiers, scrapers, routes and costs (expectations computed
here from the spec, tolerances from the binomial variance)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ratesim.rng import Streams
from ratesim.traffic import PoissonTraffic, PopulationSpec, generate_arrivals, population_table

US = 1_000_000


def _within(observed: float, mean: float, sd: float, k: float = 5.0) -> None:
    assert abs(observed - mean) <= k * sd, (observed, mean, sd)


def _share_sd(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def test_zipf_top_users_share() -> None:
    users, s = 50, 1.1
    pop = PopulationSpec(users=users, zipf_s=s)
    a = generate_arrivals(PoissonTraffic(rate_per_s=100_000), pop, 2 * US, Streams(21))
    n = len(a)
    harmonic = sum(k**-s for k in range(1, users + 1))
    counts = np.bincount(a.user, minlength=users)
    for rank in (1, 2, 10, 50):
        p = rank**-s / harmonic
        _within(counts[rank - 1] / n, p, _share_sd(p, n))


def test_zipf_zero_is_uniform() -> None:
    pop = PopulationSpec(users=10, zipf_s=0.0)
    a = generate_arrivals(PoissonTraffic(rate_per_s=50_000), pop, US, Streams(2))
    counts = np.bincount(a.user, minlength=10)
    for c in counts:
        _within(c / len(a), 0.1, _share_sd(0.1, len(a)))


def test_population_table_weights_and_scrapers() -> None:
    users, s, share, factor = 1000, 1.2, 0.05, 10.0
    spec = PopulationSpec(users=users, zipf_s=s, abusive_share=share, abusive_weight=factor)
    table = population_table(spec, Streams(5))
    assert list(table.columns[:4]) == ["user", "tier", "weight", "abusive"]
    assert table["user"].tolist() == list(range(users))
    assert int(table["abusive"].sum()) == round(share * users)
    rank = np.arange(1, users + 1, dtype=float)
    expected = rank**-s * np.where(table["abusive"], factor, 1.0)
    np.testing.assert_allclose(table["weight"], expected, rtol=1e-12)
    np.testing.assert_allclose(table["share"], expected / expected.sum(), rtol=1e-12)


def test_abusive_request_share_and_flags() -> None:
    users, s, factor = 500, 1.0, 20.0
    spec = PopulationSpec(users=users, zipf_s=s, abusive_share=0.1, abusive_weight=factor)
    table = population_table(spec, Streams(6))
    flags = table["abusive"].to_numpy()
    rank = np.arange(1, users + 1, dtype=float)
    w = rank**-s * np.where(flags, factor, 1.0)
    p = float(w[flags].sum() / w.sum())
    a = generate_arrivals(PoissonTraffic(rate_per_s=100_000), spec, US, Streams(6))
    assert np.array_equal(a.abusive, flags[a.user])
    _within(float(a.abusive.mean()), p, _share_sd(p, len(a)))


def test_tier_shares_over_users_and_per_request_tier() -> None:
    tiers = {"platinum": 0.1, "gold": 0.3, "silver": 0.6}
    spec = PopulationSpec(users=20_000, tiers=tiers)
    table = population_table(spec, Streams(8))
    assert list(table["tier"].cat.categories) == list(tiers)
    for name, share in tiers.items():
        _within(float((table["tier"] == name).mean()), share, _share_sd(share, 20_000))
    a = generate_arrivals(PoissonTraffic(rate_per_s=20_000), spec, US, Streams(8))
    assert a.tier_names == tuple(tiers)
    codes = table["tier"].cat.codes.to_numpy()
    assert np.array_equal(a.tier, codes[a.user])


def test_routes_by_weight_and_costs() -> None:
    spec = PopulationSpec(
        routes={"/orders": 3.0, "/ticker": 1.0, "/never": 0.0}, route_cost={"/ticker": 7}
    )
    a = generate_arrivals(PoissonTraffic(rate_per_s=50_000), spec, US, Streams(3))
    assert a.route_names == ("/orders", "/ticker", "/never")
    assert not np.any(a.route == 2)
    _within(float(np.mean(a.route == 0)), 0.75, _share_sd(0.75, len(a)))
    assert np.array_equal(a.cost, np.where(a.route == 1, 7, 1))


def test_to_frame_columns() -> None:
    spec = PopulationSpec(users=5, tiers={"gold": 0.5, "silver": 0.5}, routes={"/a": 1, "/b": 1})
    a = generate_arrivals(PoissonTraffic(rate_per_s=1000), spec, US, Streams(1))
    df = a.to_frame()
    assert list(df.columns) == ["time_us", "user", "tier", "route", "cost", "abusive"]
    assert len(df) == len(a)
    assert isinstance(df["tier"].dtype, pd.CategoricalDtype)
    assert df["tier"].astype(str).tolist() == [a.tier_names[c] for c in a.tier]
    assert df["route"].astype(str).tolist() == [a.route_names[c] for c in a.route]
    assert df["time_us"].dtype == np.int64


def test_population_depends_on_seed_only() -> None:
    spec = PopulationSpec(users=300, tiers={"gold": 0.5, "silver": 0.5}, abusive_share=0.1)
    t1 = population_table(spec, Streams(4))
    streams = Streams(4)
    streams.get("population").random(10)  # earlier use of the stream changes nothing
    pd.testing.assert_frame_equal(t1, population_table(spec, streams))
    t2 = population_table(spec, Streams(5))
    assert not t1["tier"].equals(t2["tier"])


def test_single_user() -> None:
    a = generate_arrivals(PoissonTraffic(rate_per_s=1000), PopulationSpec(users=1), US, Streams(0))
    assert len(a) > 0 and not a.user.any()
