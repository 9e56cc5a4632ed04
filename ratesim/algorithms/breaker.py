"""Placeholder: being written."""
class CircuitBreaker:  # noqa: D101
    pass
