"""Build one algorithm's flat ``EVALSHA`` script from the same Lua the Function library runs.

A Function library runs its top level once, at load; a script runs its whole body on every
call, so every helper it defines is a closure built again per call (measured on Redis 7.0:
~70 ns each, ~130 ns with upvalues) and every table a fresh allocation. The script of an
algorithm therefore carries only what that algorithm's call can reach, and no ``run`` closure:

* the sources (``prelude.lua``, ``lazy.lua`` where needed, the kernel file) are cut into their
  top-level statements (each with the comment lines above it);
* a statement is kept when the wrapper ``run`` or the algorithm's ``K['<name>']`` reaches it
  through the names it uses (transitively): e.g. the GCRA script drops ``fmod``, ``fmt``, the
  lazy wrapper and the Function library's scratch, and a kernel file holding two algorithms
  keeps only the one asked for;
* lines between ``--@library`` and ``--@end`` (the Function library's scratch path in ``run``)
  are dropped;
* the kernel table ``K`` is not built: ``K['<name>']`` becomes the local ``K_<name>``;
* ``run``'s body becomes the script's own body, its parameters bound by one ``local`` line
  (``algo, keys, args, once = K['<name>'], KEYS, ARGV, true``), so its ``return`` statements
  return the script's reply.

Nothing is rewritten by hand: the Lua text stays the single source, and the statements kept
are copied verbatim. The cutting relies on the sources' layout (a top-level statement starts in
column 0 with ``local`` or an assignment; its closing ``end`` or ``}`` is in column 0 too) and
fails loudly on anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def _flatten_run(text: str, algo: str) -> str:
    """``run``'s body as top-level code, its parameters bound to this script's call."""
    lines = text.splitlines()
    head = lines.index(_RUN_HEAD)
    if lines[-1] != "end":
        raise ValueError("Lua: run() must end with a column-0 'end'")
    body = "\n".join(lines[head + 1 : -1])
    bind = f"local algo, keys, args, once = K['{algo}'], KEYS, ARGV, true"
    return "\n".join(lines[:head] + [bind, body])


def flat_script(sources: list[tuple[str, str]], algo: str) -> str:
    """The ``EVALSHA`` script of ``algo`` from ``sources`` ((name, Lua text), in load order)."""
    stmts: list[Statement] = []
    for where, text in sources:
        stmts += statements(_strip_library_only(text), where)
    wanted = {"run", f"K['{algo}']"}
    todo = list(wanted)
    while todo:
        name = todo.pop()
        for s in stmts:
            if name in s.defines:
                for used in s.uses - wanted:
                    if any(used in t.defines for t in stmts):
                        wanted.add(used)
                        todo.append(used)
    runs = [s for s in stmts if "run" in s.defines]
    if len(runs) != 1:
        raise ValueError("Lua: the sources must define run() exactly once")
    kept = [
        s.text for s in stmts if s.defines & wanted and s is not runs[0] and "K" not in s.defines
    ]
    flat = "\n".join(kept + [_flatten_run(runs[0].text, algo)]) + "\n"
    return _kernels_as_locals(flat)


def _kernels_as_locals(text: str) -> str:
    """``K['x'] = ...`` as ``local K_x = ...`` and every other ``K['x']`` as ``K_x``.

    A script holds one algorithm (an alias at most): a table of kernels would be one more table
    built, and grown, per call.
    """
    text = re.sub(r"^K\['(\w+)'\](\s*=)", r"local K_\1\2", text, flags=re.M)
    return _KERNEL.sub(r"K_\1", text)
