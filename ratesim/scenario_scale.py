"""``--scale`` for a scenario file: its traffic grows as a built-in's traffic grows.

A built-in scenario at ``scale`` multiplies every traffic rate and the user population by
``scale`` (users rounded, at least 1; see :mod:`ratesim.scenarios`). A file gets the same rule
on its traffic side. Its limits are left as written: a file's limits are the configuration
under test, so ``--scale`` asks "what does *this* config do with S times the load".
"""

from __future__ import annotations

from typing import Any

from .traffic.specs import scale_traffic


def scale_file_scenario(scenario: Any, factor: float) -> Any:
    """A validated copy of ``scenario`` with traffic rates x ``factor`` and users x ``factor``.

    ``factor`` > 0 (a plain multiplier, no unit). ``ValueError`` for a trace (a recorded trace
    has no rate to multiply) or a population past its bound.
    """
    traffic = scale_traffic(scenario.traffic, factor)
    users = max(1, round(scenario.population.users * factor))
    population = scenario.population.model_copy(update={"users": users})
    data = scenario.model_dump()
    data["traffic"] = traffic.model_dump()
    data["population"] = population.model_dump()
    return type(scenario).model_validate(data)
