"""Gateway nodes behind a load balancer: which node serves each request."""

from __future__ import annotations

import numpy as np

_GOLDEN64 = 0x9E3779B97F4A7C15


def hash_user_node(user: np.ndarray, nodes: int) -> np.ndarray:
    """The ``hash_user`` load balancer: ``((user * 0x9E3779B97F4A7C15 mod 2**64) >> 32) % N``.

    A Fibonacci hash, so consecutive (Zipf-ranked) user codes spread over the nodes.
    """
    u = np.asarray(user, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (u * np.uint64(_GOLDEN64)) >> np.uint64(32)
    return (h % np.uint64(nodes)).astype(np.int64)


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
