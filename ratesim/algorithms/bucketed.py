"""Placeholder: being written."""
class BucketedWindow:  # noqa: D101
    pass
class DoubleBufferedWindow:  # noqa: D101
    pass
