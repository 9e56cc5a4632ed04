"""Placeholder: being written."""
class ConcurrencyLimit:  # noqa: D101
    pass
