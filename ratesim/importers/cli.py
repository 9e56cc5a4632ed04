"""``ratesim import KIND FILE [-o policy.yaml]``: a gateway config as a ratesim policy.

Prints the policy YAML (with the notes as comments) or writes it to ``-o``; the notes also go
to stderr. A config that cannot be mapped exits 2 with ``file:line: construct: reason``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import KINDS, ConfigError, load

EXIT_BAD_INPUT = 2


def register(sub: Any) -> None:
    """Add the ``import`` subcommand to the ``ratesim`` parser's subparsers."""
    cmd = sub.add_parser("import", help="read a gateway's rate-limit config as a ratesim policy")
    cmd.add_argument(
        "kind",
        choices=[*KINDS, "auto"],
        metavar="KIND",
        help=f"one of {', '.join(KINDS)}, or auto (guess from the file)",
    )
    cmd.add_argument("file", metavar="FILE", help="the gateway's config file")
    cmd.add_argument("-o", "--out", metavar="POLICY.yaml", help="write the policy here")
    cmd.add_argument(
        "--envoy-refill",
        choices=("continuous", "timer"),
        default="continuous",
        help="Envoy local_ratelimit refill: continuous (1.31+) or timer (older)",
    )
    cmd.add_argument("--members", type=int,
                     help="Envoy local_cluster_rate_limit: a fixed member count "
                     "(default: the live nodes, local_share: follow)")  # fmt: skip
    cmd.add_argument("--nodes", type=int, help="Sentinel cluster clients (thresholdType 0)")
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``ratesim import``; returns the exit status."""
    options: dict[str, Any] = {}
    if args.kind == "envoy-local":
        options = {"refill": args.envoy_refill, "members": args.members}
    elif args.kind == "sentinel":
        options = {"nodes": args.nodes}
    try:
        imported = load(args.file, None if args.kind == "auto" else args.kind, **options)
    except ConfigError as err:
        print(f"ratesim import: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    text = imported.policy_yaml()
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as err:
            print(f"ratesim import: cannot write {args.out}: {err.strerror}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"wrote {args.out} ({len(imported.policy.layers)} layers)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
