"""Placeholder: being written."""
class SlidingWindowLog:  # noqa: D101
    pass
