"""``sweep``: run a scenario over a design of parameter values, with replications.

One row per (point, replication), columns in this order:

* ``point`` - the point's position in the design;
* one column per parameter, named by its path (lists and mappings as JSON text);
* ``replication``, ``seed`` (the int passed to ``simulate``), ``seed_entropy`` and
  ``seed_spawn_key`` (its lineage, see :mod:`ratesim.experiments.seeds`), ``engine`` (the engine
  that ran it);
* the metrics of :mod:`ratesim.experiments.metrics`, ``wall_s`` (seconds the run took: the one
  column that differs between two identical sweeps), then the extra metrics' columns.

Every point of one replication runs with the same seed (common random numbers). Everything is
checked before the first run: the paths, every point's values (a :class:`ParameterError` naming
the path), the runner, the metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..scenario import Scenario, load_scenario
from .cache import RunCache
from .designs import grid_points
from .metrics import MetricFn
from .paths import ParameterError, ParameterPath, apply, label, resolve
from .runners import RunFailed, Task, make_runner
from .seeds import SeedPlan, replication_seeds

__all__ = ["META_COLUMNS", "sweep"]

#: The columns between the parameters and the metrics.
META_COLUMNS = ("replication", "seed", "seed_entropy", "seed_spawn_key", "engine")
_ENGINES = ("auto", "event", "fast")


def as_scenario(scenario: Scenario | str | os.PathLike[str]) -> Scenario:
    """A Scenario, a built-in scenario's name, or a YAML file's path -> a Scenario."""
    if isinstance(scenario, Scenario):
        return scenario
    from .. import scenarios

    if isinstance(scenario, str) and scenario in scenarios.names():
        return scenarios.get(scenario)
    if isinstance(scenario, str | os.PathLike):
        return load_scenario(Path(scenario))
    raise ValueError(f"scenario must be a Scenario, a built-in name or a path, got {scenario!r}")


def design(
    grid: Mapping[str, Sequence[Any]] | None, samples: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """The points of a sweep: the grid's product, the samples, or the scenario as it is."""
    if grid is not None and samples is not None:
        raise ParameterError("give grid= or samples=, not both")
    if grid is not None:
        return grid_points(grid)
    if samples is None:
        return [{}]
    if isinstance(samples, Mapping) or not isinstance(samples, Sequence) or not samples:
        raise ParameterError(f"samples must be a non-empty list of dicts, got {samples!r}")
    points = [dict(s) if isinstance(s, Mapping) else None for s in samples]
    first = points[0]
    for i, point in enumerate(points):
        if point is None:
            raise ParameterError(f"samples[{i}] must be a dict path -> value, got {samples[i]!r}")
        if first is not None and list(point) != list(first):
            raise ParameterError(
                f"samples[{i}] names {sorted(point)}, samples[0] names {sorted(first)}: every "
                "sample must set the same parameters"
            )
    return [p for p in points if p is not None]


def _check_metrics(metrics: Sequence[MetricFn] | None) -> tuple[MetricFn, ...]:
    if metrics is None:
        return ()
    if callable(metrics):
        metrics = [metrics]
    out = tuple(metrics)
    for fn in out:
        if not callable(fn):
            raise ValueError(f"metrics must be callables Result -> dict, got {fn!r}")
    return out


def _build_points(
    scenario: Scenario, points: list[dict[str, Any]]
) -> tuple[list[str], list[Scenario]]:
    names = list(points[0]) if points else []
    paths: dict[str, ParameterPath] = {p: resolve(scenario, p) for p in names}
    return names, [apply(scenario, point, paths) for point in points]


def run_design(
    scenario: Scenario,
    points: list[dict[str, Any]],
    plans: list[SeedPlan],
    *,
    metrics: tuple[MetricFn, ...] = (),
    runner: Any = "local",
    workers: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
    engine: str = "auto",
    desc: str | None = None,
) -> pd.DataFrame:
    """The engine of :func:`sweep` and of the analyses: ``points`` x ``plans``, one row each."""
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {', '.join(_ENGINES)}, got {engine!r}")
    names, built = _build_points(scenario, points)
    run = make_runner(runner, workers)
    store = RunCache(cache) if cache is not None else None
    n_rep = len(plans)
    tasks = [
        Task(p * n_rep + plan.replication, sc, plan.seed, engine, metrics)
        for p, sc in enumerate(built)
        for plan in plans
    ]
    keys = (
        [RunCache.key(t.scenario, t.seed, engine, metrics) for t in tasks]
        if store is not None
        else []
    )
    rows: list[dict[str, Any] | None] = [None] * len(tasks)
    if store is not None:
        for t in tasks:
            rows[t.index] = store.get(keys[t.index])
    todo = [t for t in tasks if rows[t.index] is None]
    bar = _progress(len(tasks), len(tasks) - len(todo), progress, desc or scenario.name)

    def on_done(index: int, row: dict[str, Any]) -> None:
        rows[index] = row
        if store is not None:
            store.put(keys[index], row)
        bar.update(1)

    try:
        run.run(todo, scenario, on_done)
    except RunFailed as exc:
        p, r = divmod(exc.index, n_rep)
        shown = ", ".join(f"{k} = {v!r}" for k, v in points[p].items()) or "the base scenario"
        raise RuntimeError(
            f"the run of point {p} ({shown}), replication {r} (seed {plans[r].seed}) failed: "
            f"{type(exc.error).__name__}: {exc.error}"
        ) from exc.error
    finally:
        bar.close()
    frame = _table(points, names, plans, rows)
    frame.attrs.update(
        parameters=names, scenario=scenario.name, runs=len(todo), cached=len(tasks) - len(todo)
    )
    return frame


def _progress(total: int, done: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, desc=f"sweep {desc}", unit="run")


def _table(
    points: list[dict[str, Any]],
    names: list[str],
    plans: list[SeedPlan],
    rows: list[dict[str, Any] | None],
) -> pd.DataFrame:
    records = []
    for p, point in enumerate(points):
        for plan in plans:
            row = dict(rows[p * len(plans) + plan.replication] or {})
            record: dict[str, Any] = {"point": p}
            record.update({name: label(point[name]) for name in names})
            record.update(
                replication=plan.replication,
                seed=plan.seed,
                seed_entropy=plan.entropy,
                seed_spawn_key=plan.spawn_key,
                engine=row.pop("engine", None),
            )
            record.update(row)
            records.append(record)
    return pd.DataFrame.from_records(records)


def sweep(
    scenario: Scenario | str | os.PathLike[str],
    grid: Mapping[str, Sequence[Any]] | None = None,
    samples: Sequence[Mapping[str, Any]] | None = None,
    replications: int = 1,
    seed: int = 0,
    metrics: Sequence[Callable[[Any], Mapping[str, Any]]] | None = None,
    runner: Any = "local",
    workers: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
    *,
    engine: str = "auto",
) -> pd.DataFrame:
    """Run ``scenario`` at every point of ``grid`` (or ``samples``), ``replications`` times.

    ``grid`` maps parameter paths (:mod:`ratesim.experiments.paths`) to lists of values and
    runs their Cartesian product; ``samples`` is a list of points (dicts path -> value, e.g.
    from :func:`~ratesim.experiments.latin_hypercube`); with neither, the scenario runs as it
    is. Replication ``r`` of every point uses the seed from
    ``numpy.random.SeedSequence(seed).spawn(replications)[r]``. ``metrics``: extra callables
    ``Result -> dict``. ``runner``: ``"local"`` (``workers`` processes, default all CPUs),
    ``"serial"``, ``"dask://host:port"`` or a ``distributed.Client``. ``cache``: a directory
    where finished runs are kept (:class:`~ratesim.experiments.cache.RunCache`). ``progress``:
    a ``tqdm`` bar. ``engine``: passed to ``simulate``.

    Returns a tidy DataFrame, one row per (point, replication); see the module docstring for
    its columns. ``df.attrs`` holds ``parameters`` (the paths), ``runs`` (runs executed) and
    ``cached`` (rows read from the cache). The table is the same whatever the runner and the
    number of workers (``wall_s`` aside).
    """
    base = as_scenario(scenario)
    return run_design(
        base,
        design(grid, samples),
        replication_seeds(seed, replications),
        metrics=_check_metrics(metrics),
        runner=runner,
        workers=workers,
        cache=cache,
        progress=progress,
        engine=engine,
    )
