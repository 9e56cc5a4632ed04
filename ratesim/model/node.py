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
