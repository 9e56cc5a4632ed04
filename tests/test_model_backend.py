"""The backend's load-dependent service time (ratesim.model.backend)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.model import BackendSpec, ConstantLatency, service_time_us
from ratesim.model.backend import slowed_service_us


def spec(load_factor: float, servers: int = 4) -> BackendSpec:
    return BackendSpec(
        servers=servers, service_time=ConstantLatency(ms=10), load_factor=load_factor
    )


def test_a_lone_request_takes_its_base_time() -> None:
    assert service_time_us(10_000, 1, spec(3.0)) == 10_000
    assert service_time_us(10_000, 50, spec(0.0)) == 10_000  # no load dependence


def test_service_time_grows_linearly_with_load() -> None:
    # 1 + 1.0 * (in_flight - 1) / 4
    s = spec(1.0)
    assert [service_time_us(10_000, k, s) for k in (1, 2, 3, 5, 9)] == [
        10_000,
        12_500,
        15_000,
        20_000,
        30_000,
    ]


def test_rounds_to_nearest_microsecond() -> None:
    s = spec(1.0, servers=3)
    assert service_time_us(1_000, 2, s) == 1_333  # 1333.33
    assert service_time_us(1_000, 3, s) == 1_667  # 1666.67


def test_vectorised_matches_scalar() -> None:
    s = spec(0.7, servers=5)
    base = np.array([0, 1, 999, 20_000, 123_457], dtype=np.int64)
    load = np.array([1, 3, 7, 12, 40])
    out = service_time_us(base, load, s)
    assert out.dtype == np.int64
    assert out.tolist() == [
        service_time_us(int(b), int(k), s) for b, k in zip(base, load, strict=True)
    ]


def test_validation() -> None:
    with pytest.raises(ValueError, match="in_flight"):
        service_time_us(1_000, 0, spec(1.0))
    with pytest.raises(ValueError, match="base_us"):
        service_time_us(-1, 1, spec(1.0))
    with pytest.raises(ValueError, match="integers"):
        service_time_us(1.5, 1, spec(1.0))  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="servers"):
        BackendSpec(servers=0, service_time=ConstantLatency(ms=1))
    with pytest.raises(ValueError, match="load_factor"):
        BackendSpec(servers=1, service_time=ConstantLatency(ms=1), load_factor=-0.1)
    with pytest.raises(ValueError, match=r"service_time\.lognormal\.sigma"):
        BackendSpec.model_validate(
            {"servers": 1, "service_time": {"kind": "lognormal", "median_ms": 1, "sigma": 0}}
        )


@settings(max_examples=300, deadline=None)
@given(
    base=st.integers(0, 10**10),
    in_flight=st.integers(1, 10**5),
    load_factor=st.floats(0.0, 100.0),
    servers=st.integers(1, 10**4),
)
def test_slowed_service_is_the_engines_formula_in_python_and_compiled(
    base: int, in_flight: int, load_factor: float, servers: int
) -> None:
    from ratesim.fast import kernels

    # the event engine's expression, verbatim
    slowdown = 1.0 + load_factor * (in_flight - 1) / servers
    want = round(base * slowdown)
    assert slowed_service_us(base, in_flight, load_factor, servers) == want
    assert kernels.slowed(base, in_flight, load_factor, float(servers)) == want
    assert kernels.slowed(base, in_flight, load_factor, servers) == want
    s = BackendSpec(servers=servers, service_time=ConstantLatency(ms=1), load_factor=load_factor)
    assert service_time_us(base, in_flight, s) == want
    assert service_time_us(np.array([base]), np.array([in_flight]), s).tolist() == [want]
