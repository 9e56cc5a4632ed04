"""The long input fuzz of issue 9: thousands of mutated scenarios and traces through
``load_scenario`` and ``ratesim run``; prints the counts.

    python benchmarks/fuzz_inputs.py [--cases 2000] [--seed 0] [--time-bound 30]

Every case must be a clean run or exit 2 with a one-paragraph message (``tests/fuzz_cases.py``
says how cases are made and judged); the exit status is 1 if any case gave a traceback or hung.
Runs take the memory budget ``tests.fuzz_cases.FUZZ_MEMORY_BUDGET``, so accepted runs stay small.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_cases import RandomChooser, Tally, make_case, run_case  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="number of cases (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--time-bound", type=int, default=30, help="seconds per case (default 30)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tally = Tally()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="ratesim-fuzz-"))
    try:
        for i in range(args.cases):
            case = make_case(RandomChooser(rng))
            work = root / str(i)
            outcome, detail = run_case(case, work, args.time_bound)
            tally.add(outcome, detail)
            shutil.rmtree(work, ignore_errors=True)
            if outcome not in ("clean", "exit2"):
                print(f"case {i}: {outcome}: {detail}", file=sys.stderr)
            if (i + 1) % 250 == 0:
                print(f"... {i + 1} cases, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - started
    print(
        f"cases {tally.cases}, clean runs {tally.clean}, exit-2 messages {tally.exit2}, "
        f"tracebacks {tally.tracebacks}, hangs {tally.hangs} (seed {args.seed}, {wall:.0f} s)"
    )
    return 0 if tally.tracebacks == 0 and tally.hangs == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
