"""The incident gallery, replayed: the figures of notebooks/06-incident-gallery.ipynb.

For each incident of ``gallery/`` (``ratesim.gallery``) it replays the traffic its README
describes through the config as written (``broken``) and the fix (``fixed``), decision by
decision on the limiter kernels (one store per gateway node for a node-scoped layer), and
writes:

* ``incidents.parquet``: per incident and config, the algorithm, where its state lives, the
  requests sent and admitted;
* ``incidents.png``: per incident, cumulative requests sent and admitted by each config;
* ``kong_pods.parquet`` / ``kong_pods.png``: the Kong incident's admissions as the pods grow.

    .venv/bin/python experiments/incident_gallery.py [--max-pods 8] [--out DIR] [--small]
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from _common import Outputs, figure, parser, run

from ratesim import MemoryStore, gallery, replay

S = 1_000_000
#: Per incident: the client's arrival times (µs; 0 starts a UTC minute) and the gateway nodes.
TRAFFIC: dict[str, tuple[list[int], int]] = {
    "kong-local-pods": ([i * 750_000 for i in range(40)], 2),
    "traefik-period-burst": ([m * 60 * S + i * 1000 for m in range(3) for i in range(6)], 1),
    "nginx-rpm-small-burst": ([i * 1000 for i in range(30)], 1),
}


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


def draw(ax: Any, name: str, flags: dict[str, list[bool]]) -> None:
    times, _ = TRAFFIC[name]
    unit, per = ("ms", 1000) if times[-1] < S else ("s", S)
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


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "incident_gallery")
    p.add_argument(
        "--max-pods",
        type=int,
        default=None,
        help="Kong pods up to this many (default 8; 2 with --small)",
    )
    args = p.parse_args(argv)
    max_pods = args.max_pods or (2 if args.small else 8)
    out = Outputs(args.out)
    names = [n for n in gallery.names() if n in TRAFFIC]
    if not names:
        raise SystemExit("no gallery/ incident with known traffic (run from a source checkout)")

    rows: list[dict[str, Any]] = []
    fig, axes = figure((6 * len(names), 4.5), 1, len(names))
    for ax, name in zip(getattr(axes, "flat", [axes]), names, strict=True):
        broken, fixed, _ = gallery.load(name)
        times, nodes = TRAFFIC[name]
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
        draw(ax, name, flags)
    table = out.table("incidents", pd.DataFrame(rows))
    print(table.to_string(index=False))
    out.png("incidents", fig)

    broken, fixed, _ = gallery.load("kong-local-pods")
    times, _ = TRAFFIC["kong-local-pods"]
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
    return out.done()


if __name__ == "__main__":
    run(main)
