"""Every runner reproduces the golden runs byte for byte (see ``tests/golden/gen.py``).

The digests were written by the simulation as it stood before it was reshaped into the SimPy
components and the compiled runner sharing one set of formulas; each runner must still give
those very bytes, for the run and for its oracle.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))

from gen import digests, golden_scenarios  # noqa: E402

from ratesim import simulate  # noqa: E402

DIGESTS = json.loads((Path(__file__).resolve().parent / "golden" / "digests.json").read_text())
SCENARIOS = golden_scenarios()


def test_the_golden_set_is_the_one_on_file() -> None:
    assert sorted(SCENARIOS) == sorted(DIGESTS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_auto_picks_the_compiled_runner(name: str) -> None:
    """The compiled runner models every golden scenario (slewing clocks, any state size)."""
    from ratesim.compile import compile_policy
    from ratesim.fast import unsupported
    from ratesim.rng import Streams
    from ratesim.traffic import generate_arrivals

    sc, seed = SCENARIOS[name]
    arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, Streams(seed))
    assert unsupported(sc, compile_policy(sc, arr)) is None


@pytest.mark.parametrize("engine", ["event", "fast"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_runner_reproduces_the_golden_run(name: str, engine: str) -> None:
    sc, seed = SCENARIOS[name]
    r = simulate(sc, seed=seed, engine=engine)
    assert r.engine == engine
    assert digests(r.data) == DIGESTS[name]["run"]
    assert digests(r.oracle.data) == DIGESTS[name]["oracle"]  # type: ignore[union-attr]
