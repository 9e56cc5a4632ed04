"""The oracle's compiled layer pass (``ratesim.fast.oracle.oracle_layer_rows``, what
``OracleStream.step`` runs) against the plain-Python oracle (``run_oracle(compiled=False)``):
every output table, on every built-in and on random scenarios (shadow layers, layers that
apply to some requests only, backend guards)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fast_engine import scenarios

import ratesim.scenarios as builtin
from ratesim.engine import compile_policy, run_oracle, simulate
from ratesim.scenario import Scenario


def _same_oracle(res) -> None:  # type: ignore[no-untyped-def]
    a = res.data.arrivals
    layers = compile_policy(res.scenario, a)
    plain = run_oracle(a, layers, compiled=False)
    got = run_oracle(a, layers)
    for name in ("outcomes", "remaining", "rejected_by", "decided_us", "pool_wait_us"):
        want = getattr(plain, name)
        have = getattr(got, name)
        assert have.dtype == want.dtype, name
        np.testing.assert_array_equal(have, want, err_msg=name)


@pytest.mark.parametrize("name", builtin.names())
def test_builtins_compiled_oracle_is_the_plain_one(name: str) -> None:
    _same_oracle(simulate(builtin.get(name, 0.03), seed=5, engine="fast"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_random_scenarios_compiled_oracle_is_the_plain_one(sc: Scenario, seed: int) -> None:
    _same_oracle(simulate(sc, seed=seed, engine="fast"))
