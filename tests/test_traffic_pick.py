"""The guide-table pick equals the binary search it replaces, draw for draw."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.traffic.pick import guide_table, pick_guided
from ratesim.traffic.population import pick_by_weight

#: Uniforms at the edges: 0, the largest double below 1 (u * total can round up to total).
EDGES = np.array([0.0, np.nextafter(1.0, 0.0), 0.5, 1e-300, 1.0 - 2.0**-40])


def _check(weights: np.ndarray, u: np.ndarray) -> None:
    cum = np.cumsum(weights)
    got = pick_guided(cum, guide_table(cum), u)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, pick_by_weight(cum, u))


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(
        st.one_of(st.just(0.0), st.floats(1e-12, 1e6, allow_nan=False)), min_size=1, max_size=60
    ).filter(lambda w: sum(w) > 0),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_weights_with_zeros(weights: list[float], seed: int) -> None:
    u = np.concatenate([EDGES, np.random.default_rng(seed).random(500)])
    _check(np.array(weights), u)


def test_zero_weight_entries_never_chosen() -> None:
    weights = np.array([0.0, 3.0, 0.0, 0.0, 1.0, 0.0])
    u = np.random.default_rng(3).random(20_000)
    got = pick_guided(np.cumsum(weights), guide_table(np.cumsum(weights)), u)
    assert set(np.unique(got)) == {1, 4}
    _check(weights, np.concatenate([EDGES, u]))


def test_zipf_population_of_a_million() -> None:
    weights = np.arange(1, 1_000_001, dtype=np.float64) ** -1.1
    _check(weights, np.concatenate([EDGES, np.random.default_rng(5).random(200_000)]))


def test_empty_draws() -> None:
    cum = np.cumsum([1.0, 2.0])
    assert len(pick_guided(cum, guide_table(cum), np.zeros(0))) == 0
