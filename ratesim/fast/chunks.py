"""Cutting a run's inputs into time chunks: the arrivals, draws and compiled layers of the
requests arriving in ``[k * chunk_us, (k + 1) * chunk_us)``, as the bounded runner takes them
(:mod:`ratesim.fast.bounded`). :func:`slice_chunks` cuts whole-run inputs (the reference the
tests compare with, and the source of ``simulate(arrivals=...)``); :mod:`ratesim.chunks` makes
them chunk by chunk from the scenario (same partition of requests into keys, ids fixed up
front)."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..chunks import Chunk
    from ..compile import CompiledLayer, Draws
    from ..traffic import Arrivals


def cut_draws(draws: Draws, lo: int, hi: int) -> Draws:
    """Rows ``lo .. hi - 1`` of ``draws``."""
    return replace(
        draws,
        node=draws.node[lo:hi],
        lat_out_us=draws.lat_out_us[lo:hi],
        lat_back_us=draws.lat_back_us[lo:hi],
        service_us=draws.service_us[lo:hi],
        backend_us=draws.backend_us[lo:hi] if len(draws.backend_us) else draws.backend_us,
    )


def cut_layer(cl: CompiledLayer, lo: int, hi: int) -> CompiledLayer:
    """``cl`` with its per-request arrays (``keys``, ``applies_np``, ``shard``) cut to rows
    ``lo .. hi - 1``; everything else (key numbering, algorithms) is run-constant."""
    return replace(
        cl,
        keys=cl.keys[lo:hi],
        applies_np=None if cl.applies_np is None else cl.applies_np[lo:hi],
        shard=None if cl.shard is None else cl.shard[lo:hi],
    )


def join_layers(parts: Sequence[list[CompiledLayer]]) -> list[CompiledLayer]:
    """The layers of consecutive row ranges ``parts`` (at least one), each per-request array
    joined once (not part by part: that would copy the first rows once per later part)."""
    if len(parts) == 1:
        return parts[0]
    out = []
    for same in zip(*parts, strict=True):
        applies = None
        if any(cl.applies_np is not None for cl in same):
            applies = np.concatenate([_applies(cl) for cl in same])
        shard = None
        if all(cl.shard is not None for cl in same):
            shard = array("q")
            for cl in same:
                assert cl.shard is not None
                shard.extend(cl.shard)
        keys = np.concatenate([cl.keys for cl in same])
        out.append(replace(same[0], keys=keys, applies_np=applies, shard=shard))
    return out


def _applies(cl: CompiledLayer) -> np.ndarray:
    if cl.applies_np is not None:
        return cl.applies_np
    return np.ones(len(cl.keys), dtype=np.int8)


def chunk_count(duration_us: int, last_us: int, chunk_us: int) -> int:
    """Chunks of ``chunk_us`` covering a run of ``duration_us`` whose last arrival is at
    ``last_us`` (-1: none)."""
    return max(1, -(-duration_us // chunk_us), last_us // chunk_us + 1)


def slice_chunks(
    duration_us: int,
    arrivals: Arrivals,
    draws: Draws,
    layers: list[CompiledLayer],
    chunk_us: int,
) -> Iterator[Chunk]:
    """The whole run's ``arrivals``, ``draws`` and ``layers`` cut into time chunks of
    ``chunk_us`` (µs); the chunks cover ``duration_us`` and every arrival."""
    if chunk_us < 1:
        raise ValueError(f"chunk_us must be >= 1 µs, got {chunk_us!r}")
    t = arrivals.time_us
    last = int(t[-1]) if len(t) else -1
    for k in range(chunk_count(duration_us, last, chunk_us)):
        lo, hi = (int(x) for x in np.searchsorted(t, [k * chunk_us, (k + 1) * chunk_us]))
        yield (
            arrivals.take(slice(lo, hi)),
            cut_draws(draws, lo, hi),
            [cut_layer(cl, lo, hi) for cl in layers],
        )
