"""Placeholder: being written."""
class TokenBucket:  # noqa: D101
    pass
