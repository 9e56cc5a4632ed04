"""A software prefetch for the compiled loop: ``prefetch(A, k)`` asks the CPU to bring the cache
line holding element ``k`` of ``A`` (flat, C order) closer, without waiting for it.

The loop reads a dozen per-request tables (``R``'s row, ``KEYS``, ``LAT``, ``OUT``, ...) at a
request's arrival and at its commands' events, each table a stream of its own; at the
flagship's sizes the hardware's prefetchers lose most of those streams and the first touch
of each line waits for memory (measured in ``docs/architecture.md``, "The compiled loop's
costs"). A prefetch is a hint: it never faults, even for an address past the array's end, so
the caller needs no bounds check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

_I32 = ir.IntType(32)


@intrinsic
def _prefetch(typingctx: Any, arr: Any, index: Any) -> Any:
    """Prefetch (for reading, kept in every cache level) the line of ``arr``'s element at flat
    index ``index`` (an integer; any value, no bounds check: a hint never faults)."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None
    sig = types.void(arr, index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], idxty, types.intp)
        size = context.get_abi_sizeof(context.get_data_type(aryty.dtype))
        base = builder.ptrtoint(ary.data, cgutils.intp_t)
        addr = builder.add(base, builder.mul(idx, ir.Constant(cgutils.intp_t, size)))
        ptr = builder.inttoptr(addr, cgutils.voidptr_t)
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (read, locality 3: keep in all levels, data cache)
        builder.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return sig, codegen


#: ``prefetch(A, k)``, typed as its callers see it (the intrinsic's own signature is numba's
#: typing function's).
prefetch = cast(Callable[[Any, int], None], _prefetch)
