"""``ratesim validate POLICY [--suite SUITE.yaml] [--from KIND] [--redis URL] [--report DIR]``.

Prints the pass/fail table. Exit status 0 when every assertion passes (and, with ``--redis``,
every replay matches the oracle), 1 when any fails, 2 on bad input: a policy, config, suite or
scenario error names the file, the line and the field, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


def register(sub: Any) -> None:
    """Add the ``validate`` subcommand to the ``ratesim`` parser's subparsers."""
    from ..importers import KINDS

    cmd = sub.add_parser(
        "validate", help="check a policy or gateway config against a suite of scenarios"
    )
    cmd.add_argument(
        "policy",
        metavar="POLICY",
        help="a ratesim policy or scenario YAML, or a gateway config (kind guessed, or --from)",
    )
    cmd.add_argument("--suite", metavar="SUITE.yaml", help="the suite (default: the standard one)")
    cmd.add_argument("--from", dest="kind", choices=list(KINDS), metavar="KIND",
                     help=f"POLICY is a gateway config of this kind: {', '.join(KINDS)}")  # fmt: skip
    cmd.add_argument("--redis", metavar="URL", help="also replay each scenario on this Redis")
    cmd.add_argument("--report", metavar="DIR", help="write the report (Markdown, PNG, data) here")
    cmd.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``ratesim validate``; returns the exit status."""
    from pathlib import Path

    from ..cli import InputError, check_writable
    from .run import run_suite

    try:
        if args.report:
            check_writable(Path(args.report))
        report = run_suite(
            args.policy,
            args.suite,
            kind=args.kind,
            redis_url=args.redis,
            progress=not args.no_progress,
        )
    except (ValueError, InputError) as err:  # ScenarioError, SuiteError, ConfigError, ...
        print(f"ratesim validate: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report.format_table())
    if args.report:
        files = report.write(args.report)
        print(f"wrote {len(files)} files to {args.report} (report.md)", file=sys.stderr)
    return EXIT_PASS if report.passed else EXIT_FAIL
