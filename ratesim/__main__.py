"""``python -m ratesim``: the same as the ``ratesim`` command."""

from ratesim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
