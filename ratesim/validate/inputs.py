"""The policy under test, and the scenario a suite entry runs it in.

:func:`load_policy` takes a :class:`~ratesim.policy.PolicySpec`, an importer's
:class:`~ratesim.importers.Imported`, a :class:`~ratesim.scenario.Scenario` (its policy), or a
path: a ratesim policy YAML (``policy: {layers: [...]}``, what ``ratesim import -o`` writes, or
a bare ``layers: [...]``), a scenario YAML (its ``policy``), or a gateway config (``kind``, or
the kind guessed by :func:`ratesim.importers.load`). Errors name the file, the line and the
field (:class:`~ratesim.scenario.ScenarioError`).

:func:`build_scenario` makes a suite entry's scenario: the built-in (at ``scale``) or the file
(its traffic at ``scale``), ``duration_s``, the policy under test dropped in (``policy:
under-test``), then the ``set`` parameter paths. Dropping a policy into a world keeps the
world's traffic: tier overrides for tiers its population does not have and route filters
naming routes it does not have decide nothing there, so they are left out (a layer left with
no route is left out) and a note says so; a policy left with no layer is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..importers import Imported
from ..importers import load as import_config
from ..policy import PolicySpec
from ..scenario import (
    Scenario,
    ScenarioError,
    _parse_yaml,
    _YamlRefused,
    format_errors,
    load_scenario,
)

__all__ = ["PolicyUnderTest", "build_scenario", "load_policy"]

_YAML_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class PolicyUnderTest:
    """The policy a suite checks, where it came from, and the importer's notes."""

    policy: PolicySpec
    label: str
    notes: list[str] = field(default_factory=list)


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: PolicySpec


def _policy_file(path: Path, data: dict[str, Any], root: Any) -> PolicySpec:
    wrapped = data if "policy" in data else {"policy": data}
    try:
        return _PolicyFile.model_validate(wrapped).policy
    except ValidationError as exc:
        # a bare `layers:` file has no `policy` node: look the locations up without it
        if "policy" not in data:
            detail = format_errors(exc, str(path), None)
        else:
            detail = format_errors(exc, str(path), root)
        raise ScenarioError(detail.replace("scenario is invalid", "policy is invalid")) from None


def load_policy(
    policy: PolicySpec | Imported | Scenario | str | os.PathLike[str],
    kind: str | None = None,
    options: dict[str, Any] | None = None,
) -> PolicyUnderTest:
    """The policy under test (see the module docstring); ``options`` go to a gateway config's
    importer (``nodes``, ``members``, ``refill``: :func:`ratesim.importers.load`)."""
    options = dict(options or {})
    if isinstance(policy, PolicySpec):
        return PolicyUnderTest(policy, "the given PolicySpec")
    if isinstance(policy, Imported):
        return PolicyUnderTest(policy.policy, f"{policy.kind} config {policy.path}", policy.notes)
    if isinstance(policy, Scenario):
        return PolicyUnderTest(policy.policy, f"the policy of scenario {policy.name!r}")
    path = Path(policy)
    if kind is not None:
        imported = import_config(path, kind, **options)
        return PolicyUnderTest(imported.policy, f"{kind} config {path}", imported.notes)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such policy file")
    if path.suffix.lower() in _YAML_SUFFIXES:
        try:
            data, root = _parse_yaml(path.read_text(encoding="utf-8"))
        except _YamlRefused as exc:
            raise ScenarioError(f"{path}:{exc.line + 1}: YAML refused: {exc.reason}") from None
        except Exception:  # not YAML ratesim reads: perhaps a gateway's file, let it say
            data, root = None, None
        if isinstance(data, dict) and "traffic" in data:
            return PolicyUnderTest(load_scenario(path).policy, f"the policy of scenario {path}")
        if isinstance(data, dict) and ("policy" in data or "layers" in data):
            return PolicyUnderTest(_policy_file(path, data, root), f"policy {path}")
    imported = import_config(path, None, **options)
    return PolicyUnderTest(imported.policy, f"{imported.kind} config {path}", imported.notes)


def fit_policy(policy: PolicySpec, scenario: Scenario) -> tuple[PolicySpec, list[str]]:
    """``policy`` without what cannot apply in ``scenario``'s traffic, and notes saying what."""
    tiers = set(scenario.population.tiers)
    routes = set(scenario.population.routes)
    layers, notes = [], []
    for layer in policy.layers:
        update: dict[str, Any] = {}
        unused = sorted(set(layer.tiers) - tiers)
        if unused:
            update["tiers"] = {t: v for t, v in layer.tiers.items() if t in tiers}
            notes.append(f"layer {layer.name}: no user of tier {', '.join(unused)} here")
        if layer.routes is not None:
            kept = [r for r in layer.routes if r in routes]
            if not kept:
                notes.append(
                    f"layer {layer.name} left out: its routes {layer.routes} are not in this "
                    f"traffic's routes {sorted(routes)}"
                )
                continue
            if len(kept) < len(layer.routes):
                update["routes"] = kept
        layers.append(layer.model_copy(update=update) if update else layer)
    return PolicySpec(layers=layers), notes


def build_scenario(entry: Any, policy: PolicySpec | None, error: Any) -> tuple[Scenario, list[str]]:
    """A suite entry's scenario (module docstring) and its notes; ``error(loc, reason)`` makes
    the exception for a problem at the entry's field ``loc``."""
    from .. import scenarios
    from ..budget import check_run_size
    from ..experiments.paths import ParameterError, apply
    from ..scenario_scale import scale_file_scenario

    spec = entry.spec
    try:
        if spec.builtin is not None:
            sc = scenarios.get(spec.builtin, scale=1.0 if spec.scale is None else spec.scale)
        else:
            sc = load_scenario(entry.path)
            if spec.scale is not None:
                sc = scale_file_scenario(sc, spec.scale)
    except ValueError as exc:
        raise error(("file",) if spec.file else ("scale",), " ".join(str(exc).split())) from None
    data = sc.model_dump()
    if spec.duration_s is not None:
        data["duration_s"] = spec.duration_s
    notes: list[str] = []
    if spec.policy == "under-test" and policy is not None:
        fitted, notes = fit_policy(policy, sc)
        if not fitted.layers:
            raise error(("policy",), "the policy under test has no layer that applies here: "
                        + "; ".join(notes))  # fmt: skip
        data["policy"] = fitted.model_dump()
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        reason = " ".join(format_errors(exc, "the scenario", None).split(":\n", 1)[-1].split())
        if spec.policy == "under-test" and policy is not None:
            raise error(("policy",), f"the policy under test cannot run here: {reason}") from None
        raise error(("duration_s",), f"the scenario cannot run so: {reason}") from None
    if spec.set:
        try:
            sc = apply(sc, dict(spec.set))
        except ParameterError as exc:
            raise error(("set",), str(exc)) from None
    try:
        check_run_size(sc)  # refused before any run, as `ratesim run` does
    except ValueError as exc:
        raise error((), " ".join(str(exc).split())) from None
    return sc, notes
