"""Fuzz the inputs (issue 9): mutated scenarios and traces through ``load_scenario`` and
``ratesim run`` give a clean run or exit 2 with one paragraph, never a traceback or a hang.

Deterministic (``derandomize=True``, no example database) and small, so it stays a few seconds
of CI; ``benchmarks/fuzz_inputs.py`` runs the same cases by the thousand and prints the counts.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fuzz_cases import Case, RandomChooser, Tally, make_case, run_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratesim.scenario import Scenario, ScenarioError, load_scenario

#: A case runs in well under a second; this bound only turns a hang into a failure.
CASE_TIME_BOUND_S = 20

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class HypothesisChooser:
    """A case's choices drawn by hypothesis (so it can shrink a failing case)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.data.draw(st.integers(0, len(options) - 1))]


def check(case: Case, tally: Tally) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        outcome, detail = run_case(case, Path(tmp), CASE_TIME_BOUND_S)
    tally.add(outcome, detail)
    assert outcome in ("clean", "exit2"), f"{outcome}: {detail}"


TALLY = Tally()


@FUZZ
@given(st.data())
def test_mutated_scenarios_run_clean_or_exit_2(data: st.DataObject) -> None:
    check(make_case(HypothesisChooser(data)), TALLY)


def test_the_fuzz_reached_both_outcomes() -> None:
    """The mutations are not all fatal, nor all harmless (runs after the fuzz test above)."""
    if TALLY.cases == 0:  # run alone: make a small seeded batch of its own
        rng = random.Random(0)
        for _ in range(30):
            check(make_case(RandomChooser(rng)), TALLY)
    assert TALLY.clean > 0 and TALLY.exit2 > 0, TALLY


YAMLISH = st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@ \n\t0123456789.e_")))


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(YAMLISH)
def test_any_text_loads_or_is_a_scenario_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            assert isinstance(load_scenario(path), Scenario)
        except ScenarioError as exc:
            assert str(exc).startswith(str(path)) or "scenario is invalid" in str(exc)
