"""Placeholder: being written."""
class FixedWindow:  # noqa: D101
    pass
class SlidingWindowCounter:  # noqa: D101
    pass
