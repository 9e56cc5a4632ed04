"""Redis Cluster key routing: hash slots and the default slot-to-shard layout.

``key_slot(key)`` follows the Redis Cluster specification exactly: ``CRC16(key) mod 16384``
with the CRC16-XMODEM variant (polynomial 0x1021, initial value 0, no reflection), where
``key`` is replaced by its **hash tag** when it has one: the bytes between the first ``{`` and
the first ``}`` after it, provided they are not empty. So ``"{user1000}.following"`` and
``"{user1000}.followers"`` share a slot, ``"foo{}{bar}"`` hashes the whole key and
``"foo{{bar}}zap"`` hashes ``"{bar"``. Text keys are hashed as their UTF-8 bytes (what a
client sends).

``shard_of(key, shards)`` assigns the 16384 slots to ``shards`` primaries in contiguous ranges
exactly as ``redis-cli --cluster create`` does (float32 cursor, ``lround``), e.g. three shards
own 0-5460, 5461-10922 and 10923-16383.
"""

from __future__ import annotations

import bisect
from functools import lru_cache

import numpy as np

SLOTS = 16384


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
        table.append(crc)
    return tuple(table)


_TABLE = _crc16_table()


def crc16_xmodem(data: bytes) -> int:
    """CRC16-XMODEM of ``data`` (the checksum Redis Cluster uses; ``b"123456789"`` -> 0x31C3)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ b]
    return crc


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed: its non-empty ``{...}`` tag, else the whole key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def _as_bytes(key: str | bytes) -> bytes:
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key)
    if isinstance(key, str):
        return key.encode("utf-8")
    raise ValueError(f"key must be str or bytes, got {type(key).__name__} {key!r}")


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster hash slot (0..16383) of ``key``, as ``CLUSTER KEYSLOT`` answers."""
    return crc16_xmodem(hash_tag(_as_bytes(key))) & (SLOTS - 1)


@lru_cache(maxsize=64)
def slot_ranges(shards: int) -> tuple[tuple[int, int], ...]:
    """``(first, last)`` slot range (inclusive) of each shard, as ``redis-cli --cluster create``."""
    shards = _check_shards(shards)
    per_node = np.float32(SLOTS) / np.float32(shards)
    cursor = np.float32(0.0)
    first = 0
    ranges = []
    for i in range(shards):
        x = float(cursor + per_node - np.float32(1))
        last = int(np.floor(x + 0.5)) if x >= 0 else -int(np.floor(-x + 0.5))  # C lround
        if last > SLOTS or i == shards - 1:
            last = SLOTS - 1
        last = max(last, first)
        ranges.append((first, last))
        first = last + 1
        cursor = np.float32(cursor + per_node)
    return tuple(ranges)


@lru_cache(maxsize=64)
def _range_starts(shards: int) -> tuple[int, ...]:
    return tuple(first for first, _ in slot_ranges(shards))


def _check_shards(shards: int) -> int:
    if isinstance(shards, bool) or not isinstance(shards, int | np.integer):
        raise ValueError(f"shards must be an integer in 1..{SLOTS}, got {shards!r}")
    if not 1 <= shards <= SLOTS:
        raise ValueError(f"shards must be an integer in 1..{SLOTS}, got {shards!r}")
    return int(shards)


def shard_of_slot(slot: int, shards: int) -> int:
    """The shard (0-based) owning ``slot`` in the default layout of ``shards`` primaries."""
    if isinstance(slot, bool) or not isinstance(slot, int | np.integer) or not 0 <= slot < SLOTS:
        raise ValueError(f"slot must be an integer in 0..{SLOTS - 1}, got {slot!r}")
    return bisect.bisect_right(_range_starts(_check_shards(shards)), int(slot)) - 1


def shard_of(key: str | bytes, shards: int) -> int:
    """The shard (0-based) holding ``key`` when the cluster has ``shards`` primaries."""
    return shard_of_slot(key_slot(key), shards)
