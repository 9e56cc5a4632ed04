"""Gateway nodes behind a load balancer: which node serves each request."""

from __future__ import annotations

import numpy as np

from .topology import epoch_counts, slots_at

_GOLDEN64 = 0x9E3779B97F4A7C15


def user_hash(user: np.ndarray) -> np.ndarray:
    """The ``hash_user`` balancer's hash of each user: ``(user * 0x9E3779B97F4A7C15 mod 2**64)
    >> 32`` (int64, below 2**32)."""
    u = np.asarray(user, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (u * np.uint64(_GOLDEN64)) >> np.uint64(32)
    return h.astype(np.int64)


def hash_user_node(user: np.ndarray, nodes: int) -> np.ndarray:
    """The ``hash_user`` load balancer: ``((user * 0x9E3779B97F4A7C15 mod 2**64) >> 32) % N``.

    A Fibonacci hash (:func:`user_hash`), so consecutive (Zipf-ranked) user codes spread over
    the nodes.
    """
    return user_hash(user) % nodes


def assign_nodes(
    load_balancer: str, user: np.ndarray, nodes: int, rng: np.random.Generator
) -> np.ndarray:
    """The node (int64, ``0 .. nodes-1``) of each request, in arrival order.

    ``round_robin``: request ``i`` goes to node ``i % nodes``; ``random``:
    ``rng.integers(0, nodes, size=n)`` (the engines pass the ``"nodes"`` stream, drawn only
    here); ``hash_user``: :func:`hash_user_node`. Raises ``ValueError`` for anything else.
    """
    n = len(user)
    if load_balancer == "round_robin":
        return np.arange(n, dtype=np.int64) % nodes
    if load_balancer == "random":
        return rng.integers(0, nodes, size=n).astype(np.int64)
    if load_balancer == "hash_user":
        return hash_user_node(user, nodes)
    raise ValueError(
        f"load_balancer must be round_robin, random or hash_user, got {load_balancer!r}"
    )


def assign_nodes_live(
    load_balancer: str,
    user: np.ndarray,
    time_us: np.ndarray,
    base_nodes: int,
    at_us: np.ndarray,
    nodes: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The node slot (int64) of each request when nodes come and go (``topology.changes``,
    :mod:`ratesim.model.topology`): the balancer picks a position among the nodes live at the
    request's arrival (``time_us``), and the epoch's slot table names the node there.

    What each balancer does on a membership change, from the change's instant on:

    * ``round_robin``: request ``i`` goes to position ``i % live`` (the rotation goes on over
      the new member list, as a round-robin balancer's counter does);
    * ``random``: ``rng.integers(0, live)`` per request (one draw each from the ``"nodes"``
      stream, as without changes);
    * ``hash_user``: ``hash % live`` with :func:`hash_user_node`'s hash: modulo hashing, not a
      consistent-hash ring, so a change of ``N`` to ``N'`` nodes moves every user whose
      ``hash % N != hash % N'`` (half of them for ``N`` to ``2N``, all onto the new nodes; most
      of them for ``N`` to ``N + 1``), and a moved user meets a node that has not seen it.
    """
    n = len(user)
    epoch = np.searchsorted(at_us, time_us, side="right")
    live = epoch_counts(base_nodes, nodes)[epoch]
    if load_balancer == "round_robin":
        pos = np.arange(n, dtype=np.int64) % live
    elif load_balancer == "random":
        pos = rng.integers(0, live).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    elif load_balancer == "hash_user":
        u = np.asarray(user, dtype=np.int64).astype(np.uint64)
        with np.errstate(over="ignore"):
            h = (u * np.uint64(_GOLDEN64)) >> np.uint64(32)
        pos = (h % live.astype(np.uint64)).astype(np.int64)
    else:
        raise ValueError(
            f"load_balancer must be round_robin, random or hash_user, got {load_balancer!r}"
        )
    return slots_at(epoch, pos, base_nodes, nodes)


class BoundedInts:
    """``rng.integers(0, high, size=n)`` (int64, ``high`` a scalar) drawn in consecutive
    pieces that concatenate to the one call's values.

    numpy's one call cannot be split: it draws 32-bit words two per 64-bit output of the bit
    generator, keeping the second half in a buffer local to the call, and Lemire's method
    rejects a word now and then, so a second call would start on a fresh 64-bit output. This
    class reads the bit generator's raw 64-bit outputs (``random_raw``, ``BLOCK`` at a time)
    and replays numpy's algorithm on them: words low half first, ``m = word * high``, the word
    accepted when ``m mod 2**32 >= (2**32 - high) mod high``, the value ``m >> 32``
    (``buffered_bounded_lemire_uint32`` of numpy's ``distributions.c``). It may read past what
    the one call would have read; the stream must serve nothing else afterwards.
    """

    BLOCK = 1 << 16

    def __init__(self, rng: np.random.Generator, high: int) -> None:
        if not 1 <= high <= 2**32 - 1:
            raise ValueError(f"high must be in 1 .. 2**32 - 1, got {high}")
        self._rng = rng
        self._high = np.uint64(high)
        self._threshold = np.uint64((2**32 - high) % high)
        self._words = np.zeros(0, dtype=np.uint64)  # 32-bit words, low half first
        self._pos = 0  # the next unread word

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` values (int64 in ``0 .. high - 1``)."""
        if self._high == 1 or n == 0:
            return np.zeros(n, dtype=np.int64)  # numpy draws nothing for a range of one value
        out: list[np.ndarray] = []
        need = n
        while need:
            # a few words more than needed cover the rare rejections (about high / 2**32)
            want = need + 16 + (need >> 8)
            if len(self._words) - self._pos < want:
                self._refill(want)
            words = self._words[self._pos : self._pos + want]
            m = words * self._high
            ok = np.flatnonzero((m & np.uint64(0xFFFFFFFF)) >= self._threshold)
            got = ok[:need]
            out.append((m[got] >> np.uint64(32)).astype(np.int64))
            # past the need-th accepted word, or past the whole window if fewer were accepted
            self._pos += int(got[-1]) + 1 if len(got) == need else len(words)
            need -= len(got)
        return np.concatenate(out)

    def _refill(self, want: int) -> None:
        blocks = -(-want // (2 * self.BLOCK))
        raw = self._rng.bit_generator.random_raw(blocks * self.BLOCK)
        words = np.empty(2 * len(raw), dtype=np.uint64)
        words[0::2] = raw & np.uint64(0xFFFFFFFF)
        words[1::2] = raw >> np.uint64(32)
        self._words = np.concatenate([self._words[self._pos :], words])
        self._pos = 0


class NodeAssigner:
    """:func:`assign_nodes` / :func:`assign_nodes_live` in consecutive pieces of a run's
    arrivals (``piece(user, time_us)``), equal once concatenated to the one call on the whole
    run: ``round_robin`` counts rows from the run's first, ``random`` without changes replays
    the one ``integers`` call (:class:`BoundedInts`), with changes draws one value per request
    (numpy's per-element path for an array of bounds keeps no buffer between calls), and
    ``hash_user`` is a function of the user alone."""

    def __init__(
        self,
        load_balancer: str,
        nodes: int,
        at_us: np.ndarray,
        counts: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        if load_balancer not in ("round_robin", "random", "hash_user"):
            raise ValueError(
                f"load_balancer must be round_robin, random or hash_user, got {load_balancer!r}"
            )
        self.load_balancer = load_balancer
        self.nodes = nodes
        self.at_us, self.counts = at_us, counts
        self.live = len(counts) > 0
        self._rng = rng
        self._ints = BoundedInts(rng, nodes) if load_balancer == "random" else None
        self.row = 0  # the run's row of the next piece's first request

    def piece(self, user: np.ndarray, time_us: np.ndarray) -> np.ndarray:
        """The node (slot) of each request of the next piece (int64)."""
        n = len(user)
        row0, self.row = self.row, self.row + n
        if self.live:
            return self._live(user, time_us, row0)
        if self.load_balancer == "round_robin":
            return np.arange(row0, row0 + n, dtype=np.int64) % self.nodes
        if self.load_balancer == "random":
            assert self._ints is not None
            return self._ints.take(n)
        return hash_user_node(user, self.nodes)

    def _live(self, user: np.ndarray, time_us: np.ndarray, row0: int) -> np.ndarray:
        n = len(user)
        epoch = np.searchsorted(self.at_us, time_us, side="right")
        live = epoch_counts(self.nodes, self.counts)[epoch]
        if self.load_balancer == "round_robin":
            pos = np.arange(row0, row0 + n, dtype=np.int64) % live
        elif self.load_balancer == "random":
            pos = self._rng.integers(0, live).astype(np.int64) if n else np.zeros(0, np.int64)
        else:
            pos = user_hash(user) % live
        return slots_at(epoch, pos, self.nodes, self.counts)
