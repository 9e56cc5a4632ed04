"""The result of a suite: a pass/fail table, the runs behind it, and a written report.

:class:`Report` has ``passed`` (every assertion holds and, with ``--redis``, every replay
matched the oracle), ``table`` (one row per scenario x assertion: ``scenario``, ``assertion``,
``metric``, ``mean``, ``ci_low``, ``ci_high``, ``passed``, ``detail``, ``redis_parity``),
``runs`` (one row per scenario x replication: the sweep's metrics), ``parity`` (one row per
scenario with ``--redis``) and ``notes``. ``write(dir)`` writes ``report.md`` (the table, the
notes, the plots), ``results.csv`` / ``results.parquet`` (the table), ``runs.csv`` /
``runs.parquet``, ``parity.csv`` and per scenario ``<scenario>-timeline.png`` and
``<scenario>-oracle-gap.png`` (its first replication).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .rules import Outcome

__all__ = ["TABLE_COLUMNS", "Report"]

TABLE_COLUMNS = (
    "scenario",
    "assertion",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "passed",
    "detail",
    "redis_parity",
)


def _parity_text(parity: dict[str, Any] | None) -> str | None:
    if parity is None:
        return None
    if parity["identical"]:
        return f"identical ({parity['decisions']} decisions)"
    return f"{parity['differing']} of {parity['decisions']} differ"


@dataclass
class Report:
    """See the module docstring. Built by :func:`ratesim.validate.run_suite`."""

    source: str
    policy: str
    replications: int
    confidence: float
    seed: int
    policy_notes: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(repr=False, default_factory=list)
    run_frames: list[pd.DataFrame] = field(repr=False, default_factory=list)
    parity_rows: list[dict[str, Any]] = field(repr=False, default_factory=list)
    notes: dict[str, list[str]] = field(repr=False, default_factory=dict)
    scenarios: dict[str, tuple[Any, int]] = field(repr=False, default_factory=dict)
    results: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def start(cls, suite: Any, put: Any) -> Report:
        """An empty report for ``suite`` (a loaded Suite) and the policy under test."""
        spec = suite.spec
        return cls(
            suite.source,
            "(each scenario's own)" if put is None else put.label,
            spec.replications,
            spec.confidence,
            spec.seed,
            [] if put is None else list(put.notes),
        )

    def add(
        self,
        label: str,
        scenario: Any,
        seed: int,
        runs: pd.DataFrame,
        outcomes: list[Outcome],
        notes: list[str],
        parity: dict[str, Any] | None,
    ) -> None:
        """Record one scenario: its runs, checked rows, notes and (``--redis``) parity."""
        self.scenarios[label] = (scenario, seed)
        self.notes[label] = list(notes)
        self.run_frames.append(runs.assign(scenario=label))
        for o in outcomes:
            self.rows.append(
                {
                    "scenario": label,
                    "assertion": o.assertion,
                    "metric": o.metric,
                    "mean": o.mean,
                    "ci_low": o.ci_low,
                    "ci_high": o.ci_high,
                    "passed": o.passed,
                    "detail": o.detail,
                    "redis_parity": _parity_text(parity),
                }
            )
        if parity is not None:
            self.parity_rows.append({"scenario": label, **parity})

    def __repr__(self) -> str:
        return (
            f"Report(passed={self.passed}, scenarios={len(self.scenarios)}, "
            f"rows={len(self.rows)}, failed={len(self.failed)}, suite={self.source!r})"
        )

    @property
    def table(self) -> pd.DataFrame:
        """One row per scenario x assertion (columns :data:`TABLE_COLUMNS`)."""
        return pd.DataFrame(self.rows, columns=list(TABLE_COLUMNS))

    @property
    def runs(self) -> pd.DataFrame:
        """One row per scenario x replication: ``scenario`` then the sweep's columns."""
        if not self.run_frames:
            return pd.DataFrame({"scenario": []})
        frame = pd.concat(self.run_frames, ignore_index=True)
        return frame[["scenario", *[c for c in frame.columns if c != "scenario"]]]

    @property
    def parity(self) -> pd.DataFrame:
        """With ``--redis``: per scenario ``decisions``, ``identical``, ``differing``, ``first``."""
        cols = ["scenario", "decisions", "identical", "differing", "first"]
        return pd.DataFrame(self.parity_rows, columns=cols)

    @property
    def passed(self) -> bool:
        """Every assertion held, and every ``--redis`` replay matched the oracle."""
        return bool(self.table["passed"].all()) and all(p["identical"] for p in self.parity_rows)

    @property
    def failed(self) -> pd.DataFrame:
        """The rows of :attr:`table` that did not pass."""
        t = self.table
        return t[~t["passed"].astype(bool)].reset_index(drop=True)

    def format_table(self) -> str:
        """The pass/fail table as text (what ``ratesim validate`` prints), then a line per
        failure with its detail, then the verdict."""
        t = self.table
        shown = pd.DataFrame(
            {
                "": ["PASS" if p else "FAIL" for p in t["passed"]],
                "scenario": t["scenario"],
                "assertion": t["assertion"],
                "mean": [_num(x) for x in t["mean"]],
                f"{self.confidence:.0%} interval": [
                    _interval(lo, hi) for lo, hi in zip(t["ci_low"], t["ci_high"], strict=True)
                ],
            }
        )
        if self.parity_rows:
            shown["redis parity"] = t["redis_parity"]
        head = (
            f"ratesim validate: {self.policy} against {self.source} "
            f"({self.replications} replications, seed {self.seed})"
        )
        failed = len(self.failed)
        verdict = "all assertions pass" if self.passed else f"{failed} assertion(s) fail"
        if self.parity_rows and not all(p["identical"] for p in self.parity_rows):
            verdict += "; the Redis replay differs from the oracle"
        body = shown.to_string(index=False)
        why = [f"FAIL {r.scenario}: {r.assertion}: {r.detail}" for r in self.failed.itertuples()]
        why += [
            f"FAIL {p['scenario']}: Redis replay: {p['first']}"
            for p in self.parity_rows
            if not p["identical"]
        ]
        return "\n".join([head, body, *why, verdict])

    def write(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write the report into ``out_dir`` (made if missing); returns the files written."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "results.csv", out / "results.parquet", out / "runs.csv"]
        self.table.to_csv(written[0], index=False)
        self.table.to_parquet(written[1], index=False)
        runs = self.runs
        runs.to_csv(written[2], index=False)
        runs.astype({c: str for c in runs.columns if runs[c].dtype == object}).to_parquet(
            out / "runs.parquet", index=False
        )
        written.append(out / "runs.parquet")
        if self.parity_rows:
            self.parity.to_csv(out / "parity.csv", index=False)
            written.append(out / "parity.csv")
        plots = self._plots(out)
        (out / "report.md").write_text(self._markdown(plots), encoding="utf-8")
        return [*written, *plots.values(), out / "report.md"]

    def _plots(self, out: Path) -> dict[str, Path]:
        import matplotlib.pyplot as plt

        from .. import plots
        from ..cli import safe_dir_name
        from ..engine import simulate

        plots.use_agg_if_headless()
        files: dict[str, Path] = {}
        for label, (scenario, seed) in self.scenarios.items():
            result = self.results.get(label)
            if result is None:  # the first replication again: same scenario, same seed
                result = simulate(scenario, seed=seed, progress=False)
            for kind, draw in (("timeline", plots.timeline), ("oracle-gap", plots.oracle_gap)):
                fig, ax = plt.subplots(figsize=(9, 4))
                draw(result, ax=ax)
                ax.set_title(f"{label}: {kind} (seed {seed})")
                path = out / f"{safe_dir_name(label)}-{kind}.png"
                fig.savefig(path, dpi=100, bbox_inches="tight")
                plt.close(fig)
                files[f"{label}/{kind}"] = path
        return files

    def _markdown(self, plots: dict[str, Path]) -> str:
        verdict = "**PASS**" if self.passed else f"**FAIL** ({len(self.failed)} assertion(s))"
        lines = [
            "# ratesim validate",
            "",
            f"- policy: {self.policy}",
            f"- suite: {self.source}",
            f"- replications: {self.replications} per scenario (seed {self.seed}, common "
            f"random numbers), checked on the {self.confidence:.0%} Student-t bound",
            f"- verdict: {verdict}",
            "",
        ]
        lines += [f"- note: {n}" for n in self.policy_notes]
        cols = ["scenario", "assertion", "mean", "ci_low", "ci_high", "passed", "detail"]
        if self.parity_rows:
            cols.append("redis_parity")
        lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.rows:
            cells = [
                _num(row[c]) if c in ("mean", "ci_low", "ci_high") else str(row[c]) for c in cols
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        for label in self.scenarios:
            lines += ["", f"## {label}", ""]
            lines += [f"- note: {n}" for n in self.notes.get(label, [])]
            lines += [""] if self.notes.get(label) else []
            for key, path in plots.items():
                if key.startswith(f"{label}/"):
                    lines.append(f"![{key}]({path.name})")
        lines += [
            "",
            "Data: `results.csv` / `results.parquet` (this table), `runs.csv` / `runs.parquet` "
            "(every replication's metrics)" + (", `parity.csv`" if self.parity_rows else "") + ".",
            "",
        ]
        return "\n".join(lines)


def _num(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.4g}"


def _interval(lo: float, hi: float) -> str:
    return "" if math.isnan(lo) or math.isnan(hi) else f"[{lo:.4g}, {hi:.4g}]"
