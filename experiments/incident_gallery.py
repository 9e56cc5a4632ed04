"""The incident gallery, validated: the figures of notebooks/06-incident-gallery.ipynb.

For every incident of ``gallery/`` (``ratesim.gallery.names()``) it runs the incident's suite
through ``ratesim.validate`` on the config as written (``broken``) and on the fix (``fixed``),
prints both pass/fail tables, and draws the mechanism:

* ``incidents.parquet``: one row per incident x config x assertion: the metric's mean, its
  confidence bounds, the verdict and the detail (which bound missed the threshold, by how much);
* ``incidents.png``: per incident, each failed assertion's bound for the broken and the fixed
  config as a share of its threshold (the margin; 1 is the threshold);
* ``replays.parquet`` / ``replays.png``: the three incidents that are about one client's
  arrivals (Kong, Traefik, nginx), replayed request by request on the limiter kernels (one
  store per gateway node for a node-scoped layer): cumulative requests sent and admitted;
* ``<incident>.png`` for the two incidents that are about the shared store (Envoy ratelimit
  through a Redis outage, Sentinel's cluster fallback): the first replication of the suite's
  scenario, broken above fixed, as a timeline (the outage shaded, failure-mode decisions
  dotted) and the figure of its mechanism (decision latency; the gap to the oracle);
* ``kong_pods.parquet`` / ``kong_pods.png``: the Kong incident's admissions as the pods grow.

At full size each suite runs as written (its own replications); ``--small`` runs 2
replications of the same scenarios (the scale is kept: the Sentinel suite's ``peak_excess``
threshold is a count of requests, which a smaller scale would shrink below it).

    .venv/bin/python experiments/incident_gallery.py [--replications N] [--max-pods 8]
        [--out DIR] [--small]
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import yaml
from _common import Outputs, figure, parser, run

import ratesim
from ratesim import MemoryStore, gallery, plots, replay
from ratesim.validate import validate

S = 1_000_000
#: The incidents about one client's arrivals, replayed request by request: arrival times (µs;
#: 0 starts a UTC minute) and the gateway nodes behind the load balancer (their READMEs).
REPLAYS: dict[str, tuple[list[int], int]] = {
    # 40 requests of one consumer in the first 30 s of a minute, over 2 pods
    "kong-local-pods": ([i * 750_000 for i in range(40)], 2),
    # 6 requests at once, every minute, for 3 minutes
    "traefik-period-burst": ([m * 60 * S + i * 1000 for m in range(3) for i in range(6)], 1),
    # a page load: 30 API calls 1 ms apart from an idle client
    "nginx-rpm-small-burst": ([i * 1000 for i in range(30)], 1),
}
#: The incidents about the shared store: the plot that shows each one's mechanism, beside the
#: timeline of the suite's scenario.
SIMULATED = {
    "envoy-ratelimit-redis-outage": plots.latency,
    "sentinel-cluster-fallback": plots.oracle_gap,
}


def suite_for(path: Any, replications: int | None) -> dict[str, Any]:
    """The suite at ``path`` as a dict, its scenario files made absolute, with
    ``replications`` when given (the suite's own otherwise)."""
    data = yaml.safe_load(path.read_text())
    for entry in data["scenarios"]:
        if "file" in entry:
            entry["file"] = str(path.parent / entry["file"])
    if replications is not None:
        data["replications"] = replications
    return data


def validate_all(replications: int | None) -> tuple[pd.DataFrame, dict[tuple[str, str], Any]]:
    """Every incident's suite on its broken and fixed config: the joined tables, and the
    reports by ``(incident, config)``."""
    tables, reports = [], {}
    for name in gallery.names():
        broken, fixed, path = gallery.load(name)
        suite = suite_for(path, replications)
        for label, imported in (("broken", broken), ("fixed", fixed)):
            report = validate(imported, suite, progress=False)
            reports[name, label] = report
            print(f"== {name}, {label}\n{report.format_table()}\n")
            tables.append(report.table.assign(incident=name, config=label))
    table = pd.concat(tables, ignore_index=True)
    front = ["incident", "config"]
    return table[front + [c for c in table.columns if c not in front]], reports


def margins(table: pd.DataFrame) -> pd.DataFrame:
    """Per incident and assertion the broken config fails: the bound it is checked on as a
    share of the threshold, for both configs (``<``: the upper bound; ``>``: the lower)."""
    rows = []
    failing = table[(table["config"] == "broken") & ~table["passed"].astype(bool)]
    for r in failing.itertuples():
        op, threshold = _op_threshold(str(r.assertion))
        if op is None or threshold == 0:
            continue
        for config in ("broken", "fixed"):
            row = table[
                (table["incident"] == r.incident)
                & (table["config"] == config)
                & (table["scenario"] == r.scenario)
                & (table["assertion"] == r.assertion)
            ].iloc[0]
            bound = row["ci_high"] if op.startswith("<") else row["ci_low"]
            bound = row["mean"] if pd.isna(bound) else bound
            rows.append(
                {
                    "incident": r.incident,
                    "assertion": r.assertion,
                    "config": config,
                    "share": float(bound) / threshold,
                }
            )
    return pd.DataFrame(rows)


def _op_threshold(text: str) -> tuple[str | None, float]:
    """``('<', 1.0)`` for ``'over_admitted_pct < 1'`` (a bare number at the end only)."""
    for op in ("<=", ">=", "<", ">"):
        if f" {op} " in text:
            try:
                return op, float(text.rsplit(f" {op} ", 1)[1])
            except ValueError:
                return None, 0.0
    return None, 0.0


def draw_margins(ax: Any, shares: pd.DataFrame) -> None:
    """Bars: each failed assertion's bound over its threshold, broken beside fixed."""
    pairs = shares.drop_duplicates(["incident", "assertion"])
    labels = [f"{r.incident}\n{r.assertion}" for r in pairs.itertuples()]
    for k, (config, color) in enumerate((("broken", "tab:red"), ("fixed", "tab:blue"))):
        mine = shares[shares["config"] == config]
        ax.barh(
            [j + 0.2 - 0.4 * k for j in range(len(mine))],
            mine["share"],
            height=0.4,
            color=color,
            label=config,
        )
    ax.axvline(1.0, color="black", ls="--", lw=1, label="threshold")
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("bound checked / threshold (symlog; < 1 passes a '<', > 1 a '>')")
    ax.set_title("What each broken config fails, and the fix, relative to the threshold")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def decide(layer: Any, times_us: list[int], nodes: int) -> list[bool]:
    """One client's requests through ``layer`` (round-robin over ``nodes`` stores if its state
    is per node): admitted flags in arrival order."""
    stores = nodes if layer.scope == "node" else 1
    allowed = [False] * len(times_us)
    for node in range(stores):
        mine = list(range(node, len(times_us), stores))
        calls = pd.DataFrame(
            {"time_us": [times_us[i] for i in mine], "key": ["client"] * len(mine)}
        )
        for i, ok in zip(
            mine, replay(calls, layer.algorithm, MemoryStore())["allowed"], strict=True
        ):
            allowed[i] = bool(ok)
    return allowed


def draw_replay(ax: Any, name: str, flags: dict[str, list[bool]]) -> None:
    """Cumulative requests sent (a wide pale band) and admitted by each config."""
    times, _ = REPLAYS[name]
    unit, per = ("ms", 1000) if times[-1] < S else ("s", S)  # a page load lasts milliseconds
    t = [x / per for x in times]
    ax.step(t, range(1, len(t) + 1), where="post", color="gray", lw=7, alpha=0.35, label="sent")
    for label, color, style in (("fixed", "tab:blue", "-"), ("broken", "tab:red", "--")):
        ax.step(
            t,
            pd.Series(flags[label]).cumsum(),
            where="post",
            color=color,
            lw=2,
            ls=style,
            label=f"admitted, {label}",
        )
    ax.set_title(name)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("requests (cumulative)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")


def replays(out: Outputs) -> None:
    """The client replays of the incidents in :data:`REPLAYS`: table and figure."""
    rows: list[dict[str, Any]] = []
    fig, axes = figure((6 * len(REPLAYS), 4.5), 1, len(REPLAYS))
    for ax, (name, (times, nodes)) in zip(axes, REPLAYS.items(), strict=True):
        broken, fixed, _ = gallery.load(name)
        flags = {}
        for label, imported in (("broken", broken), ("fixed", fixed)):
            layer = imported.policy.layers[0]
            flags[label] = decide(layer, times, nodes)
            rows.append(
                {
                    "incident": name,
                    "config": label,
                    "algorithm": layer.algorithm.kind,
                    "scope": layer.scope,
                    "nodes": nodes,
                    "requests": len(times),
                    "admitted": sum(flags[label]),
                }
            )
        draw_replay(ax, name, flags)
    print(out.table("replays", pd.DataFrame(rows)).to_string(index=False))
    out.png("replays", fig)


def mechanism(name: str, reports: dict[tuple[str, str], Any]) -> Any:
    """The first replication of the suite's (first) scenario, broken above fixed: the timeline
    and the plot of :data:`SIMULATED`."""
    fig, axes = figure((18, 8), 2, 2)
    for row, config in enumerate(("broken", "fixed")):
        label, (scenario, seed) = next(iter(reports[name, config].scenarios.items()))
        result = ratesim.simulate(scenario, seed=seed, progress=False)
        plots.timeline(result, ax=axes[row, 0])
        SIMULATED[name](result, ax=axes[row, 1])
        for ax in axes[row]:
            # the plots' own titles name the scenario and run; here the config says which row
            ax.set_title(f"{config}: {ax.get_title().split(' — ')[0]}", fontsize="medium")
    fig.suptitle(f"{name}: scenario {label}, the suite's first replication (seed {seed})")
    return fig


def kong_pods(out: Outputs, max_pods: int) -> None:
    """The Kong incident's admissions in its minute, one to ``max_pods`` pods."""
    broken, fixed, _ = gallery.load("kong-local-pods")
    times, _ = REPLAYS["kong-local-pods"]
    pods = list(range(1, max_pods + 1))
    kong = pd.DataFrame(
        {
            "pods": pods,
            "admitted_broken": [sum(decide(broken.policy.layers[0], times, n)) for n in pods],
            "admitted_fixed": [sum(decide(fixed.policy.layers[0], times, n)) for n in pods],
        }
    )
    out.table("kong_pods", kong)
    fig, ax = figure((8, 4))
    ax.plot(
        kong["pods"],
        kong["admitted_broken"],
        marker="o",
        color="tab:red",
        label="broken (policy: local)",
    )
    ax.plot(
        kong["pods"],
        kong["admitted_fixed"],
        marker="s",
        color="tab:blue",
        label="fixed (policy: redis)",
    )
    ax.set_xlabel("Kong pods behind the load balancer")
    ax.set_ylabel(f"admitted in the minute (of {len(times)} sent)")
    ax.set_title("kong-local-pods: a per-node limit multiplies with the pods")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    out.png("kong_pods", fig)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "incident_gallery")
    p.add_argument(
        "--replications",
        type=int,
        default=None,
        help="replications per suite (default: each suite's own; 2 with --small)",
    )
    p.add_argument(
        "--max-pods",
        type=int,
        default=None,
        help="Kong pods up to this many (default 8; 2 with --small)",
    )
    args = p.parse_args(argv)
    if args.replications is not None and not 1 <= args.replications <= 100:
        p.error(f"--replications {args.replications}: need 1..100")
    reps = args.replications or (2 if args.small else None)
    max_pods = args.max_pods or (2 if args.small else 8)
    out = Outputs(args.out)
    if not gallery.names():
        raise SystemExit("no gallery/ directory next to ratesim (run from a source checkout)")

    table, reports = validate_all(reps)
    out.table("incidents", table)
    wrong = [
        f"{name}: {config} {'passes' if r.passed else 'fails'}"
        for (name, config), r in reports.items()
        if r.passed != (config == "fixed")
    ]
    if wrong:  # a gallery that no longer tells its configs apart is a finding: say it loudly
        print("NOT AS THE GALLERY STATES: " + "; ".join(wrong))
    fig, ax = figure((13, 1.2 + 0.9 * len(gallery.names())))
    draw_margins(ax, margins(table))
    out.png("incidents", fig)
    replays(out)
    for name in gallery.names():
        if name in SIMULATED:
            out.png(name, mechanism(name, reports))
    kong_pods(out, max_pods)
    return out.done()


if __name__ == "__main__":
    run(main)
