"""The one key rule both stores follow, so ``MemoryStore`` and ``RedisStore`` agree on identity.

A user key is text:

* a ``str`` is used as it is (a ``str`` subclass such as ``numpy.str_`` becomes a plain ``str``);
* an ``int`` (or a numpy integer) becomes its decimal ``str()``: ``777`` and ``"777"`` are one
  key, as they always were on Redis, whose keys are byte strings;
* anything else (``bool``, ``float``, ``bytes``, tuples, ``None``, ...) is a ``ValueError``:
  ``True`` would silently be ``"True"`` or ``1``, ``1.0`` and ``1`` would differ, and bytes have
  no single text form (decode them yourself, with the encoding you mean).

The text must encode as UTF-8 (the bytes Redis stores). A ``str`` holding a lone surrogate
(``"\\udc80"``, what ``os.fsdecode`` or ``errors="surrogateescape"`` produce from invalid bytes)
cannot: that is a ``ValueError`` naming the key and the position, raised before anything is
sent, whatever the store's failure mode (it is bad input, not a store failure).
"""

from __future__ import annotations

import numpy as np


def normalize_key(key: object) -> str:
    """The canonical text of a user key (see the module docstring); ``ValueError`` otherwise."""
    if type(key) is str:
        # Fast path: ASCII text always encodes; only non-ASCII text can hold a surrogate.
        if key.isascii():
            return key
        return _checked(key)
    if type(key) is int:  # exactly int: a bool's type is bool
        return str(key)
    if isinstance(key, str):
        return _checked(str.__str__(key))
    if isinstance(key, bool | np.bool_):
        raise ValueError(f"key must be a str or an int, got the bool {key!r}")
    if isinstance(key, int | np.integer):
        return str(int(key))
    raise ValueError(
        f"key must be a str or an int, got {type(key).__name__} {key!r}"
        + (" (decode bytes to str first)" if isinstance(key, bytes | bytearray) else "")
    )


def _checked(key: str) -> str:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"key {key!r} is not valid Unicode text: it holds a lone surrogate "
            f"{key[exc.start]!r} at index {exc.start}, which has no UTF-8 encoding"
        ) from None
    return key
