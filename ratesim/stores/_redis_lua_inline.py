"""Inline our Lua's helper calls into a flat ``EVALSHA`` script's body, at the call sites it can.

A script runs its whole body on every call, so each ``local function`` it defines (and each
kernel table of closures) is built again per call (measured on Redis 7.0: ~70 ns a closure, a
table more) and then called. This module copies a callee's body into its call site instead, so
the script defines neither the closure nor the table. It is not a general Lua compiler: it
works on the layout of ratesim's own Lua files (one statement a line, blocks closed on their
own line, no long brackets) and inlines only where the rewrite is plainly equivalent; every
other call site keeps its call (and the callee its definition). ``tests/test_redis_lua_script.py``
runs the result against the plain composition on a real server.

A call ``f(a, b)`` whose value is the whole right-hand side of ``[local] x, y = f(a, b)``
becomes::

    local __i1, __i2
    repeat
      local p1, p2 = a, b      -- f's parameters: bound as a call binds them
      <f's body, each "return e1, e2" as "__i1, __i2 = e1, e2" then "break">
    until true
    [local] x, y = __i1, __i2

``repeat ... until true`` runs once and ``break`` leaves it from anywhere outside a loop, so a
callee whose ``return`` statements all lie outside its loops is inlinable; the fresh ``__i``
names keep the callee's locals from capturing the targets. Other forms:

* ``if c then x = f(a) end`` on one line is first written over three;
* a call inside a larger statement (``local t = f(a) - now``, ``redis.call(..., f(a))``) is
  hoisted into a fresh local just before it, when nothing in the statement runs before the call
  (no call to its left but the ones enclosing it, no ``and``/``or`` that could skip it) and the
  statement is not a condition (``if``/``elseif``/``while``/``until``/``for``).

A site is left alone when a name the callee uses freely is declared as a local anywhere in the
body (the copy would see that local instead of the callee's upvalue), and a callee is not
inlined at all if it defines a function, takes ``...`` or returns from inside a loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import count

#: Comments and short strings, to be masked before looking at code.
_NOISE = re.compile(r"""--[^\n]*|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*\"""")
_KEYWORDS = frozenset(
    {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in",
     "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"}
)  # fmt: skip
_IDENT = re.compile(r"(?<![\w.:])[A-Za-z_]\w*")
_ONE_LINE_IF = re.compile(r"^if\s(.+?)\sthen\s(.+)\send$")
_TARGETS = r"[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*"
#: Statements a call is never hoisted out of: their expression is a condition or a loop bound.
_CONDITION = re.compile(r"^(if|elseif|while|until|for)\b")
#: Bound on nested inlining (a callee's body calling another callee): ours nest two deep.
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Callee:
    """A function whose body can be copied into its call sites."""

    params: tuple[str, ...]
    #: the body, one statement a line, dedented to column 0, comments dropped
    body: tuple[str, ...]
    #: names the body uses without declaring them (upvalues and globals)
    free: frozenset[str]
    #: names the body assigns (``a, b = ...``, not ``local``)
    assigned: frozenset[str] = frozenset()
    #: every path returns exactly one value (so a hoisted call loses none)
    single: bool = False


def mask(line: str) -> str:
    """``line`` with comments and string contents blanked (same length), to search code safely."""

    def blank(m: re.Match[str]) -> str:
        text = m.group(0)
        keep = 2 if text.startswith("--") else 1  # a comment stays a comment, a string a string
        return text[:keep] + " " * (len(text) - keep)

    return _NOISE.sub(blank, line)


def code_of(line: str) -> str:
    """``line`` without its trailing comment and surrounding blanks."""
    masked = mask(line)
    cut = masked.find("--")
    return (line if cut < 0 else line[:cut]).strip()


def _words(code: str) -> list[str]:
    return re.findall(r"[A-Za-z_]\w*", mask(code))


def declared(lines: list[str] | tuple[str, ...]) -> set[str]:
    """Names declared as locals (``local``, ``local function``, ``for`` variables) in ``lines``."""
    out: set[str] = set()
    for line in lines:
        code = mask(code_of(line))
        m = re.match(r"^local\s+function\s+(\w+)", code)
        if m:
            out.add(m.group(1))
            continue
        m = re.match(r"^local\s+(" + _TARGETS + ")", code) or re.match(
            r"^for\s+(" + _TARGETS + r")\s*(=|in\b)", code
        )
        if m:
            out.update(n.strip() for n in m.group(1).split(","))
    return out


def normalize(lines: list[str] | tuple[str, ...], *, comments: bool = False) -> list[str]:
    """Trailing comments cut, one-line ``if c then s end`` over 3 lines; comment lines dropped
    (kept with ``comments``)."""
    out: list[str] = []
    for line in lines:
        code = code_of(line)
        if not code:
            if comments and line.strip():
                out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        m = _ONE_LINE_IF.match(mask(code))  # on masked text: a string may say "then"
        words = _words(code)
        once = all(words.count(w) == 1 for w in ("if", "then", "end"))
        if m and once and "else" not in words and "elseif" not in words:
            cond, body = code[m.start(1) : m.end(1)], code[m.start(2) : m.end(2)]
            out += [f"{indent}if {cond} then", f"{indent}  {body}", f"{indent}end"]
        else:
            out.append(indent + code)
    return out


def _returns_outside_loops(body: list[str]) -> bool:
    """True when no ``return`` of ``body`` (normalized) sits inside one of its loops."""
    stack: list[str] = []
    for line in body:
        words = _words(line)
        first = words[0] if words else ""
        if first == "return" and "loop" in stack:
            return False
        opens = [w for w in words if w in ("do", "then", "repeat", "function")]
        closes = [w for w in words if w in ("end", "until")]
        if first in ("for", "while", "repeat") and len(opens) > len(closes):
            stack.append("loop")
        elif len(opens) > len(closes) and first not in ("elseif",):
            stack.append("block")
        elif len(closes) > len(opens) and first not in ("else", "elseif"):
            if not stack:
                return False
            stack.pop()
    return not stack


def callee(params: str, body_lines: list[str]) -> Callee | None:
    """The callee of ``function(params)`` with ``body_lines``, or None when not inlinable."""
    if "..." in params:
        return None
    names = tuple(p.strip() for p in params.split(",") if p.strip())
    body = normalize(body_lines)
    if not body:
        return None
    base = min(len(ln) - len(ln.lstrip()) for ln in body)
    body = [ln[base:] for ln in body]
    words = [w for ln in body for w in _words(ln)]
    if "function" in words or not _returns_outside_loops(body):
        return None
    for ln in body:
        code = ln.strip()
        if code.startswith("return") and not _balanced(mask(code)):
            return None
    local = declared(body) | set(names)
    free = {w for ln in body for w in _IDENT.findall(mask(ln))} - local - _KEYWORDS
    assigned: set[str] = set()
    for ln in body:
        m = re.match(rf"^\s*({_TARGETS})\s*=[^=]", mask(ln))
        if m:
            assigned.update(t.strip() for t in m.group(1).split(","))
    return Callee(names, tuple(body), frozenset(free), frozenset(assigned), _single(body))


def _single(body: list[str]) -> bool:
    """Every ``return`` of ``body`` gives one value (not a call, not ``...``), and the body ends
    with one at its top level (it cannot fall off its end, which returns no value)."""
    rets = [ln.strip() for ln in body if re.match(r"^\s*return\b", ln)]
    if not rets or not re.match(r"^return\b", body[-1]):
        return False
    for code in rets:
        values = _split_args(code[len("return") :])
        if len(values) != 1 or _is_call(values[0]) or "..." in values[0]:
            return False
    return True


def _is_call(expr: str) -> bool:
    """``expr`` is a call as a whole (``f(x)``, ``a.b(x)``), whose values could be many."""
    masked = mask(expr.strip())
    m = re.match(r"^[A-Za-z_][\w.:\[\]]*\s*\(", masked)
    return m is not None and _close(masked, m.end() - 1) == len(masked) - 1


def _split_args(args: str) -> list[str]:
    """The top-level comma-separated expressions of ``args`` (none for an empty list)."""
    masked = mask(args)
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(masked):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
    parts.append(args[start:].strip())
    return [] if parts == [""] else parts


def _balanced(masked: str) -> bool:
    depth = 0
    for ch in masked:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return False
    return depth == 0


def _close(masked: str, open_at: int) -> int:
    """Index of the parenthesis closing the one at ``open_at`` in ``masked``."""
    depth = 0
    for i in range(open_at, len(masked)):
        depth += masked[i] in "([{"
        depth -= masked[i] in ")]}"
        if depth == 0:
            return i
    raise ValueError(f"Lua: unbalanced call in {masked!r}")


class Inliner:
    """Rewrites statement lines, copying the bodies of ``callees`` (name -> Callee) into them."""

    def __init__(self, callees: dict[str, Callee]) -> None:
        self.callees = callees
        self.fresh = count(1)
        names = "|".join(re.escape(n) for n in sorted(callees, key=len, reverse=True))
        self.call = re.compile(rf"(?<![\w.:])({names})\s*\(") if callees else None

    def run(self, lines: list[str]) -> list[str]:
        """``lines`` with every call site it can inline inlined (nested calls too)."""
        out = normalize(lines, comments=True)
        for _ in range(_MAX_DEPTH):
            taken = declared(out)
            new: list[str] = []
            changed = False
            for line in out:
                got = self._site(line, taken)
                if got is None or not code_of(line):
                    new.append(line)
                else:
                    new += normalize(got)
                    changed = True
            out = new
            if not changed:
                return out
        raise ValueError("Lua: inlining nests deeper than expected")

    def _site(self, line: str, taken: set[str]) -> list[str] | None:
        """The lines replacing ``line`` when it holds an inlinable call, else None."""
        if self.call is None or not code_of(line):
            return None
        indent = line[: len(line) - len(line.lstrip())]
        code = line.strip()
        masked = mask(code)
        for m in self.call.finditer(masked):
            fn = self.callees[m.group(1)]
            if fn.free & taken:
                continue
            stop = _close(masked, m.end() - 1)
            args = code[m.end() : stop]
            whole = re.match(rf"^(local\s+)?({_TARGETS})\s*=\s*$", code[: m.start()])
            if whole and stop == len(code) - 1:
                local, targets = whole.group(1) or "", whole.group(2)
                return self._expand(fn, args, indent, local, targets)
            # As the last argument, table item or returned value, every value of the call
            # counts: a hoisted local keeps one.
            after = masked[stop + 1 :].lstrip()
            many = after[:1] in (")", "}") or (not after and masked.startswith("return"))
            if (fn.single or not many) and self._hoistable(masked, m.start()):
                tmp = f"__i{next(self.fresh)}"
                call = f"local {tmp} = {code[m.start() : stop + 1]}"
                return [indent + call, indent + code[: m.start()] + tmp + code[stop + 1 :]]
        return None

    def _hoistable(self, masked: str, at: int) -> bool:
        """A call at ``at`` runs first in its statement: hoisting it changes nothing."""
        if _CONDITION.match(masked) or re.search(r"\b(and|or|function)\b", masked):
            return False
        left = masked[:at]
        # A call to the left that closes before ours is evaluated before it.
        calls = re.finditer(r"[\w\]\)]\s*\(", left)
        return all(_close(masked, m.end() - 1) >= at for m in calls)

    @staticmethod
    def _binds(fn: Callee, args: str) -> list[tuple[str, str]]:
        """(parameter, argument) pairs to bind: all but a parameter passed its own name.

        ``local p = p`` would only copy the caller's local into a new one of the same name; a
        body that never assigns the parameter can read the caller's directly.
        """
        if not fn.params:
            return []
        values = _split_args(args)
        # Fewer arguments than parameters: a last call or ... could fill several, so bind all
        # as the call would; more: the extra ones are still evaluated, so the same.
        multi = values and re.search(r"[\w\]\)]\s*\(|\.\.\.", mask(values[-1]))
        if len(values) > len(fn.params) or (len(values) < len(fn.params) and multi):
            return [(", ".join(fn.params), args)]
        values += ["nil"] * (len(fn.params) - len(values))
        out = []
        for name, value in zip(fn.params, values, strict=False):
            if value != name or name in fn.assigned:
                out.append((name, value))
        return out

    def _expand(self, fn: Callee, args: str, indent: str, local: str, targets: str) -> list[str]:
        names = [t.strip() for t in targets.split(",")]
        temps = [f"__i{next(self.fresh)}" for _ in names]
        tlist = ", ".join(temps)
        out = [f"{indent}local {tlist}", f"{indent}repeat"]
        binds = self._binds(fn, args)
        if binds:
            names_, values = zip(*binds, strict=True)
            out.append(f"{indent}  local {', '.join(names_)} = {', '.join(values)}")
        for ln in fn.body:
            inner = ln[: len(ln) - len(ln.lstrip())]
            code = ln.strip()
            if re.match(r"^return\b", code):
                value = code[len("return") :].strip()
                if value:
                    out.append(f"{indent}  {inner}{tlist} = {value}")
                out.append(f"{indent}  {inner}break")
            else:
                out.append(f"{indent}  {ln}")
        out += [f"{indent}until true", f"{indent}{local}{targets} = {tlist}"]
        return out
