"""Build one algorithm's flat ``EVALSHA`` script from the same Lua the Function library runs.

A Function library runs its top level once, at load; a script runs its whole body on every
call, so every helper it defines is a closure built again per call (measured on Redis 7.0:
~70 ns each, ~130 ns with upvalues) and every table a fresh allocation. The script of an
algorithm therefore carries only what that algorithm's call can reach, and no ``run`` closure:

* the sources (``prelude.lua``, ``lazy.lua`` where needed, the kernel file) are cut into their
  top-level statements (each with the comment lines above it);
* a statement is kept when the wrapper ``run``'s body (after the inlining below) or, if that
  still uses it, the algorithm's ``K['<name>']`` reaches it through the names it uses
  (transitively): e.g. the GCRA script drops ``fmod``, ``fmt``, the
  lazy wrapper and the Function library's scratch, and a kernel file holding two algorithms
  keeps only the one asked for;
* lines between ``--@library`` and ``--@end`` (the Function library's scratch path in ``run``)
  are dropped;
* the kernel table ``K`` is not built: ``K['<name>']`` becomes the local ``K_<name>``;
* ``run``'s body becomes the script's own body, its parameters bound by one ``local`` line
  (``algo, keys, args, once = K['<name>'], KEYS, ARGV, true``), so its ``return`` statements
  return the script's reply;
* in that body, the calls of the helpers and of the kernel's ``step``/``expires`` are inlined
  where :mod:`ratesim.stores._redis_lua_inline` can do it plainly (the kernel's constant fields
  such as ``algo.lazy`` folded, ``if nil then ... end`` dropped), so a helper or the kernel
  table is defined only if a call of it is left (the GCRA script keeps none: no closure, no
  kernel table is built per call);
* the ``--@params`` block (the table ``p`` of parameters) becomes locals ``p_0, p_1, ...`` when
  the body only ever reads ``p[<integer>]``.

Nothing is rewritten by hand: the Lua text stays the single source, and the statements kept
are copied verbatim or mechanically inlined. The cutting relies on the sources' layout (a
top-level statement starts in column 0 with ``local`` or an assignment; its closing ``end`` or
``}`` is in column 0 too) and fails loudly on anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ratesim.stores._redis_lua_inline import Callee, Inliner, callee, code_of, mask

#: A statement's first line: ``local ...``, ``name = ...`` or ``K['name'] = ...``.
_START = re.compile(r"^(local\s|[A-Za-z_]\w*\s*=|K\['\w+'\]\s*=)")
#: Column-0 lines that close a statement opened above.
_CLOSER = re.compile(r"^(end|\}|\)|end\)|\}\))[,;]?\s*$")
#: Comments and string literals, removed before looking for names (``--`` comments only: the
#: sources use no long brackets).
_NOISE = re.compile(r"""--[^\n]*|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*\"""")
_KERNEL = re.compile(r"K\['(\w+)'\]")
_NAME = re.compile(r"[A-Za-z_]\w*")
_RUN_HEAD = "local function run(algo, keys, args, once)"
_NAME_LIST = r"[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*"


@dataclass(frozen=True)
class Statement:
    """One top-level statement of a Lua source, its comment lines above it included."""

    text: str
    #: names it defines: locals, assigned upvalues, ``K['<algorithm>']`` entries
    defines: frozenset[str]
    #: names it mentions (``K['<algorithm>']`` entries as such)
    uses: frozenset[str]


def _names(code: str) -> tuple[set[str], set[str]]:
    """(``K['x']`` entries, identifiers) mentioned in ``code``, comments and strings aside."""
    no_comments = re.sub(r"--[^\n]*", "", code)
    kernels = {f"K['{m}']" for m in _KERNEL.findall(no_comments)}
    idents = set(_NAME.findall(_NOISE.sub(" ", code)))
    return kernels, idents


def _defines(first_line: str) -> frozenset[str]:
    m = re.match(r"^local\s+function\s+(\w+)", first_line)
    if m:
        return frozenset({m.group(1)})
    m = re.match(r"^local\s+([\w\s,]+?)\s*(=|$)", first_line)
    if m:
        return frozenset(n.strip() for n in m.group(1).split(","))
    m = re.match(r"^K\['(\w+)'\]\s*=", first_line)
    if m:
        return frozenset({f"K['{m.group(1)}']"})
    m = re.match(r"^(\w+)\s*=", first_line)
    if m:
        return frozenset({m.group(1)})
    raise ValueError(f"Lua statement of unknown form: {first_line!r}")


def statements(source: str, where: str) -> list[Statement]:
    """Cut ``source`` (named ``where`` in errors) into its top-level statements."""
    out: list[Statement] = []
    pending: list[str] = []  # comments and blank lines waiting for the next statement
    current: list[str] | None = None
    for number, line in enumerate(source.splitlines(), 1):
        top = line[:1] not in ("", " ", "\t")
        if top and not line.startswith("--") and not _CLOSER.match(line):
            if not _START.match(line):
                raise ValueError(f"{where}:{number}: not a top-level statement: {line!r}")
            if current is not None:
                out.append(_statement(current))
            current = pending + [line]
            pending = []
        elif current is None or (top and line.startswith("--")) or not line.strip():
            pending.append(line)
        else:
            current.extend(pending + [line])
            pending = []
    if current is not None:
        out.append(_statement(current))
    return out


def _statement(lines: list[str]) -> Statement:
    code = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("--")]
    defines = _defines(code[0])
    kernels, idents = _names("\n".join(lines))
    return Statement("\n".join(lines), defines, frozenset(kernels | idents))


def _strip_library_only(text: str) -> str:
    """``text`` without the lines from each ``--@library`` to its ``--@end``."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        mark = line.strip()
        if mark == "--@library":
            skipping = True
        elif mark == "--@end":
            skipping = False
        elif not skipping:
            kept.append(line)
    if skipping:
        raise ValueError("Lua: a --@library block has no --@end")
    return "\n".join(kept)


def _run_parts(text: str) -> tuple[list[str], list[str]]:
    """(the comment lines above ``run``, ``run``'s body lines) of ``run``'s statement."""
    lines = text.splitlines()
    head = lines.index(_RUN_HEAD)
    if lines[-1] != "end":
        raise ValueError("Lua: run() must end with a column-0 'end'")
    return lines[:head], lines[head + 1 : -1]


def _helpers(stmts: list[Statement]) -> dict[str, Callee]:
    """The inlinable ``local function``s of ``stmts`` (name -> callee)."""
    out: dict[str, Callee] = {}
    for s in stmts:
        lines = s.text.splitlines()
        first = next(i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("--"))
        m = re.match(r"^local function (\w+)\((.*)\)\s*$", lines[first])
        if m and m.group(1) != "run" and lines[-1] == "end":
            got = callee(m.group(2), lines[first + 1 : -1])
            if got is not None:
                out[m.group(1)] = got
    return out


def _kernel_fields(stmts: list[Statement], algo: str) -> dict[str, Callee | str] | None:
    """The fields of ``K['<algo>']`` (aliases followed): methods as callees, constants as text.

    None when the table is not of the known shape (two-space-indented ``name = function(...)``
    ... ``end,`` and ``name = constant,`` fields) or a method is not inlinable.
    """
    name = f"K['{algo}']"
    for _ in range(4):
        stmt = next((s for s in stmts if name in s.defines), None)
        if stmt is None:
            return None
        lines = [ln for ln in stmt.text.splitlines() if code_of(ln)]
        alias = re.match(r"^K\['\w+'\]\s*=\s*(K\['\w+'\])\s*$", code_of(lines[0]))
        if alias is None:
            break
        name = alias.group(1)
    else:
        return None
    if not re.match(r"^K\['\w+'\]\s*=\s*\{$", code_of(lines[0])) or lines[-1] != "}":
        return None
    fields: dict[str, Callee | str] = {}
    i = 1
    while i < len(lines) - 1:
        code = code_of(lines[i])
        fn = re.match(r"^  (\w+) = function\((.*)\)$", lines[i].rstrip())
        const = re.match(r"^(\w+) = ([\w.-]+),$", code)
        if fn:
            end = lines.index("  end,", i)
            got = callee(fn.group(2), lines[i + 1 : end])
            if got is None:
                return None
            fields[fn.group(1)] = got
            i = end + 1
        elif const and lines[i].startswith("  ") and not lines[i].startswith("   "):
            fields[const.group(1)] = const.group(2)
            i += 1
        else:
            return None
    return fields


def _inline_run(body: list[str], stmts: list[Statement], algo: str) -> list[str]:
    """``run``'s body with the helpers' and the kernel's calls inlined where they can be.

    The kernel's methods are inlined (``algo.step(...)``) and its constant fields folded
    (``algo.lazy``, ``nil`` when absent) only for a table of the known shape and not ``lazy``
    (a lazy kernel's table goes to ``run_lazy`` anyway).
    """
    callees: dict[str, Callee] = dict(_helpers(stmts))
    fields = _kernel_fields(stmts, algo)
    if fields is not None and fields.get("lazy") != "true":
        callees.update({f"algo.{k}": v for k, v in fields.items() if isinstance(v, Callee)})
        consts = {k: v for k, v in fields.items() if isinstance(v, str)}

        def fold(m: re.Match[str]) -> str:
            return consts.get(m.group(1), "nil")

        body = [re.sub(r"(?<![\w.:])algo\.(\w+)\b(?!\s*\()", fold, ln) for ln in body]
        body = _drop_dead_ifs(body)
    return _scalar_params(Inliner(callees).run(body))


#: The table of params a ``--@params`` block builds: ``p[i]`` is ``tonumber(args[N + i])``.
_PARAMS_CTOR = re.compile(r"^p = \{\[0\] = tonumber\(args\[(\d+)\]\), unpack\(args, (\d+), ")


def _scalar_params(body: list[str]) -> list[str]:
    """The ``--@params`` block building ``p`` as locals ``p_<i>``, when ``p`` is only indexed.

    The block builds ``p = {[0] = tonumber(args[N]), unpack(args, N + 1, ...)}`` and converts
    the rest in place. When every other mention of ``p`` in ``body`` is ``p[<integer>]`` (or
    ``p`` declared in a ``local`` list), the table is never needed: ``p_<i> =
    tonumber(args[N + i])`` for the indices read (``args[N]`` always, as the constructor does;
    an absent argument is nil, as it would be in the table). Otherwise only the markers go.
    """
    marks = [i for i, ln in enumerate(body) if ln.strip() in ("--@params", "--@params end")]
    if not marks:
        return body
    if len(marks) != 2:
        raise ValueError("Lua: a --@params block needs its '--@params end'")
    start, stop = marks
    rest = body[:start] + body[stop + 1 :]
    indices: set[int] = {0}
    decl = None
    for n, ln in enumerate(rest):
        masked = mask(ln)
        uses = [m.end() for m in re.finditer(r"(?<![\w.:])p\b", masked)]
        if not uses:
            continue
        if re.match(rf"^\s*local\s+{_NAME_LIST}\s*$", masked) and decl is None:
            decl = n
            continue
        for at in uses:
            idx = re.match(r"\[(\d+)\]", masked[at:])
            if idx is None:
                return body[:start] + body[start + 1 : stop] + body[stop + 1 :]
            indices.add(int(idx.group(1)))
    if decl is None:
        return body[:start] + body[start + 1 : stop] + body[stop + 1 :]
    ctor = [_PARAMS_CTOR.match(code_of(ln)) for ln in body[start + 1 : stop]]
    base = next((int(m.group(1)) for m in ctor if m and int(m.group(2)) == int(m.group(1)) + 1), 0)
    if not base:
        raise ValueError("Lua: a --@params block must build p = {[0] = tonumber(args[N]), ...}")
    names = [f"p_{i}" for i in sorted(indices)]
    # tonumber(nil) is nil (an absent argument), as the table would hold.
    values = [f"tonumber(args[{base + i}])" for i in sorted(indices)]
    indent = body[start][: len(body[start]) - len(body[start].lstrip())]
    block = [f"{indent}{', '.join(names)} = {', '.join(values)}"]
    out = []
    for n, ln in enumerate(rest[:start] + block + rest[start:]):
        if n == decl:
            ln = re.sub(r"(?<![\w.:])p\b", ", ".join(names), ln)
        else:
            ln = re.sub(r"(?<![\w.:])p\[(\d+)\]", r"p_\1", ln)
        out.append(ln)
    return out


def _drop_dead_ifs(lines: list[str]) -> list[str]:
    """``lines`` without the blocks ``if nil then`` ... ``end`` (no ``else``) folding left."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        if code_of(line) in ("if nil then", "if false then"):
            end = lines.index(indent + "end", i)
            branches = [
                ln for ln in lines[i + 1 : end] if re.match(rf"^{indent}(else|elseif)\b", ln)
            ]
            if not branches:
                i = end + 1
                continue
        out.append(line)
        i += 1
    return out


def flat_script(sources: list[tuple[str, str]], algo: str) -> str:
    """The ``EVALSHA`` script of ``algo`` from ``sources`` ((name, Lua text), in load order)."""
    stmts: list[Statement] = []
    for where, text in sources:
        stmts += statements(_strip_library_only(text), where)
    runs = [s for s in stmts if "run" in s.defines]
    if len(runs) != 1:
        raise ValueError("Lua: the sources must define run() exactly once")
    head, body = _run_parts(runs[0].text)
    body = _inline_run(body, stmts, algo)
    # What the body still reaches: the kernel table only if a call or a field read is left.
    _, body_names = _names("\n".join(body))
    uses_algo = "algo" in body_names
    wanted = set(body_names) | ({f"K['{algo}']"} if uses_algo else set())
    todo = list(wanted)
    while todo:
        name = todo.pop()
        for s in stmts:
            if name in s.defines and s is not runs[0]:
                for used in s.uses - wanted:
                    if any(used in t.defines for t in stmts):
                        wanted.add(used)
                        todo.append(used)
    kept = [
        s.text for s in stmts if s.defines & wanted and s is not runs[0] and "K" not in s.defines
    ]
    if uses_algo:
        bind = f"local algo, keys, args, once = K['{algo}'], KEYS, ARGV, true"
    else:
        bind = "local keys, args, once = KEYS, ARGV, true"
    flat = "\n".join(kept + head + [bind] + body) + "\n"
    return _kernels_as_locals(flat)


def _kernels_as_locals(text: str) -> str:
    """``K['x'] = ...`` as ``local K_x = ...`` and every other ``K['x']`` as ``K_x``.

    A script holds one algorithm (an alias at most): a table of kernels would be one more table
    built, and grown, per call.
    """
    text = re.sub(r"^K\['(\w+)'\](\s*=)", r"local K_\1\2", text, flags=re.M)
    return _KERNEL.sub(r"K_\1", text)
