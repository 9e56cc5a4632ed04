"""The validation suite: its YAML format, bounded and checked, with errors at file:line: field.

A suite (``ratesim validate --suite SUITE.yaml``, or a dict for :func:`ratesim.validate`)::

    replications: 5          # runs per scenario, 1..MAX_REPLICATIONS (seeds spawned from `seed`)
    seed: 1                  # root seed; every scenario's replication r uses the same seed (CRN)
    confidence: 0.95         # of the Student-t interval each assertion is checked on
    importer: {nodes: 4}     # optional: options for a gateway config's importer (nodes,
                             # members, refill: what the config cannot say about the deployment)
    assertions: [...]        # optional: checked in every scenario
    scenarios:
      - builtin: exchange-surge        # or  file: world.yaml  (relative to the suite's file)
        name: surge                    # optional label (default: the built-in or file name)
        scale: 0.1                     # a built-in's sizes, or a file's traffic (0 < S <= 10)
        duration_s: 30                 # optional override, seconds (<= MAX_DURATION_S)
        policy: under-test             # the policy under test in this world; `own`: its own
        set: {redis.failovers: [{at_s: 12, lost_writes_ms: 1000}]}   # parameter paths
        assertions:
          - over_admitted_pct < 1
          - first_trip(site_orders) > 9
          - never_engages: [breaker]
          - degradation_order == [node_bucket, user_window]

The assertion forms are in :mod:`ratesim.validate.rules`. Everything is checked before the
first run: a :class:`SuiteError` names the file, the line and the field (``scenarios[1].scale``),
and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..scenario import (
    MAX_YAML_BYTES,
    ScenarioError,
    _loc_str,
    _node_at,
    _parse_yaml,
    _YamlRefused,
    format_errors,
)
from .rules import Rule, RuleSyntaxError, parse_rule

__all__ = [
    "MAX_ASSERTIONS",
    "MAX_DURATION_S",
    "MAX_REPLICATIONS",
    "MAX_SCALE",
    "MAX_SCENARIOS",
    "STANDARD_SUITE",
    "Entry",
    "Suite",
    "SuiteError",
    "SuiteSpec",
    "load_suite",
]

#: Bounds of a suite: a suite is a sign-off run, not a sweep (use ratesim.experiments for that).
MAX_REPLICATIONS = 100
MAX_SCENARIOS = 50
MAX_ASSERTIONS = 100
MAX_SCALE = 10.0
MAX_DURATION_S = 3600.0
#: The standard suite used when none is given (see docs/guides/validate.md).
STANDARD_SUITE = Path(__file__).resolve().parent / "standard.yaml"

AssertionItem = str | dict[str, list[str]]
#: Options a suite may pass to a gateway config's importer (:func:`ratesim.importers.load`).
IMPORTER_OPTIONS = ("nodes", "members", "refill")


class SuiteError(ScenarioError):
    """A suite that cannot run: ``file:line: field: reason`` (a ScenarioError, a ValueError)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ScenarioEntrySpec(_Spec):
    """One scenario of a suite (see the module docstring)."""

    builtin: str | None = None
    file: str | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    scale: Annotated[float, Field(gt=0, le=MAX_SCALE)] | None = None
    duration_s: Annotated[float, Field(gt=0, le=MAX_DURATION_S)] | None = None
    policy: Literal["under-test", "own"] = "under-test"
    set: dict[str, Any] = Field(default_factory=dict, max_length=MAX_ASSERTIONS)
    assertions: list[AssertionItem] = Field(default_factory=list, max_length=MAX_ASSERTIONS)

    @model_validator(mode="after")
    def _one_source(self) -> ScenarioEntrySpec:
        if (self.builtin is None) == (self.file is None):
            raise ValueError("builtin: give exactly one of 'builtin' (a name) or 'file' (a path)")
        return self


class SuiteSpec(_Spec):
    """A suite as data (see the module docstring)."""

    description: Annotated[str, Field(max_length=10_000)] = ""
    replications: Annotated[int, Field(ge=1, le=MAX_REPLICATIONS)] = 5
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 1
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    importer: dict[str, int | str] = Field(default_factory=dict, max_length=len(IMPORTER_OPTIONS))
    assertions: list[AssertionItem] = Field(default_factory=list, max_length=MAX_ASSERTIONS)
    scenarios: list[ScenarioEntrySpec] = Field(min_length=1, max_length=MAX_SCENARIOS)

    @field_validator("importer")
    @classmethod
    def _known_options(cls, value: dict[str, int | str]) -> dict[str, int | str]:
        unknown = sorted(set(value) - set(IMPORTER_OPTIONS))
        if unknown:
            raise ValueError(f"unknown importer option {unknown[0]!r}; known: {IMPORTER_OPTIONS}")
        return value


@dataclass
class Entry:
    """A scenario of a loaded suite: its spec, label, file (resolved), rules and where it is."""

    index: int
    spec: ScenarioEntrySpec
    label: str
    path: Path | None
    rules: list[Rule]
    rule_locs: list[tuple[int | str, ...]]


@dataclass
class Suite:
    """A loaded, checked suite. ``error(loc, reason)`` makes a :class:`SuiteError` at the line of
    field ``loc`` (a tuple such as ``("scenarios", 0, "policy")``)."""

    spec: SuiteSpec
    source: str
    entries: list[Entry]
    root: yaml.Node | None = field(default=None, repr=False)

    def error(self, loc: tuple[int | str, ...], reason: str) -> SuiteError:
        """A :class:`SuiteError` naming the source, the line of ``loc`` (when known) and it."""
        node = _node_at(self.root, loc) if self.root is not None else None
        where = f"{self.source}:{node.start_mark.line + 1}" if node is not None else self.source
        return SuiteError(f"{where}: {_loc_str(loc)}: {reason}")


def _read(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise SuiteError(f"{path}: the suite file is larger than {MAX_YAML_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read the suite: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: the suite is not UTF-8 text: {exc}") from None
    try:
        return _parse_yaml(text)
    except _YamlRefused as exc:
        raise SuiteError(f"{path}:{exc.line + 1}: YAML refused: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SuiteError(
            f"{path}{line}: not valid YAML: {' '.join(str(exc).split())[:300]}"
        ) from None


def load_suite(suite: str | Path | Mapping[str, Any] | None) -> Suite:
    """A suite from a YAML file's path, a dict, or ``None`` (the standard suite).

    Raises :class:`SuiteError` naming the file, the line and the field: unknown or missing
    fields, values out of bounds, an unknown built-in name, a scenario file that does not
    exist, an assertion that does not parse, a scenario with no assertion to check.
    """
    if suite is None:
        suite = STANDARD_SUITE
    base = Path(".")
    root: yaml.Node | None = None
    if isinstance(suite, Mapping):
        data: Any = dict(suite)
        source = "<suite>"
    else:
        path = Path(suite)
        data, root = _read(path)
        source, base = str(path), path.parent
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite must be a YAML mapping, got {type(data).__name__}")
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        detail = format_errors(exc, source, root).split(":\n", 1)[-1]
        raise SuiteError("suite is invalid:\n" + detail) from None
    out = Suite(spec, source, [], root)
    shared = _rules(out, spec.assertions, ("assertions",))
    for i, entry in enumerate(spec.scenarios):
        out.entries.append(_entry(out, i, entry, base, shared))
    return out


def _rules(
    suite: Suite, items: list[AssertionItem], loc: tuple[int | str, ...]
) -> list[tuple[Rule, tuple[int | str, ...]]]:
    rules = []
    for j, item in enumerate(items):
        try:
            rules.append((parse_rule(item), (*loc, j)))
        except RuleSyntaxError as exc:
            raise suite.error((*loc, j), str(exc)) from None
    return rules


def _entry(
    suite: Suite,
    i: int,
    entry: ScenarioEntrySpec,
    base: Path,
    shared: list[tuple[Rule, tuple[int | str, ...]]],
) -> Entry:
    from .. import scenarios

    loc: tuple[int | str, ...] = ("scenarios", i)
    path = None
    if entry.builtin is not None:
        if entry.builtin not in scenarios.names():
            raise suite.error(
                (*loc, "builtin"),
                f"unknown built-in scenario {entry.builtin!r}; known: {', '.join(scenarios.names())}",
            )
        label = entry.name or entry.builtin
    else:
        assert entry.file is not None  # one of the two, checked by the model
        path = Path(entry.file)
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise suite.error((*loc, "file"), f"scenario file {str(path)!r} does not exist")
        label = entry.name or path.stem
    rules = shared + _rules(suite, entry.assertions, (*loc, "assertions"))
    if not rules:
        raise suite.error(loc, "no assertion to check (give 'assertions' here or for the suite)")
    taken = {e.label for e in suite.entries}
    if label in taken:
        raise suite.error((*loc, "name"), f"two scenarios are labelled {label!r}: give a 'name'")
    return Entry(i, entry, label, path, [r for r, _ in rules], [at for _, at in rules])
