"""The user documentation cannot rot: its code runs, and its API reference matches the code.

* Every ```python block of the executed documents runs, in order, in one namespace per document
  (like a notebook session), in a temporary working directory. The blocks check their own
  printed claims with ``assert``. A block whose fence is preceded by the line
  ``<!-- no-test -->`` (it needs a real Redis or a long run) is kept out of the executed set; it
  must still compile. Each document must execute at least a stated number of blocks, so the test
  cannot pass on nothing (a renamed fence, a stray marker).
* ``docs/api.md`` lists public names under ``## `module` `` headings as
  ``- `Name(params) -> ...` — description``: every name must exist, and where the entry gives a
  parameter list its names must be the callable's parameters, in order.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
NO_TEST = "<!-- no-test -->"

#: Document -> the least number of blocks it must execute.
EXECUTED_AT_LEAST = {
    "tutorial.md": 14,
    "guides/algorithms.md": 25,
    "guides/importers.md": 8,
    "guides/time.md": 4,
    "guides/simulation.md": 6,
    "guides/redis.md": 2,
    "guides/simpy-components.md": 2,
    "guides/experiments.md": 11,
    "guides/gallery.md": 2,
    "guides/validate.md": 5,
}


@dataclass(frozen=True)
class Block:
    """One fenced ```python block: where it starts (1-based line of its first code line)."""

    doc: str
    line: int
    code: str
    executed: bool


def python_blocks(doc: str) -> list[Block]:
    """The ```python blocks of ``docs/<doc>``, in order, with their ``no-test`` status."""
    return parse_blocks((DOCS / doc).read_text(encoding="utf-8"), doc)


def parse_blocks(text: str, doc: str) -> list[Block]:
    """The ```python blocks of ``text``; a block is not executed when the last non-blank line
    before its fence is the ``no-test`` marker."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            prev = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise AssertionError(f"docs/{doc}:{i + 1}: unterminated ```python block")
            code = "\n".join(lines[start:end]) + "\n"
            blocks.append(Block(doc, start + 1, code, prev != NO_TEST))
            i = end
        i += 1
    return blocks


def run_blocks(blocks: list[Block]) -> int:
    """Execute the executed blocks in one namespace; return how many ran."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for block in blocks:
        if not block.executed:
            continue
        code = compile(block.code, f"docs/{block.doc}:{block.line}", "exec")
        exec(code, namespace)
        ran += 1
    return ran


@pytest.fixture(autouse=True)
def _headless(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Blocks write files into a temporary directory and plot without a display."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("doc", sorted(EXECUTED_AT_LEAST))
def test_document_code_runs(doc: str) -> None:
    ran = run_blocks(python_blocks(doc))
    assert ran >= EXECUTED_AT_LEAST[doc], f"docs/{doc}: only {ran} blocks executed"


def all_docs() -> list[str]:
    return sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))


@pytest.mark.parametrize("doc", all_docs())
def test_every_block_compiles(doc: str) -> None:
    for block in python_blocks(doc):
        compile(block.code, f"docs/{block.doc}:{block.line}", "exec")


def test_no_unmarked_block_is_left_out() -> None:
    """A document outside the executed set has no unmarked ```python block (it would run nowhere)."""
    for doc in all_docs():
        if doc in EXECUTED_AT_LEAST:
            continue
        loose = [b.line for b in python_blocks(doc) if b.executed]
        assert not loose, f"docs/{doc}: blocks at lines {loose} run nowhere; mark them no-test"


def test_the_marker_hides_only_the_next_block() -> None:
    text = (
        "```python\na = 1\n```\n\n<!-- no-test -->\n\n```python\nb = 2\n```\n"
        "text\n```python\nc = 3\n```\n```sh\nd\n```\n"
    )
    blocks = parse_blocks(text, "synthetic.md")
    assert [(b.line, b.code, b.executed) for b in blocks] == [
        (2, "a = 1\n", True),
        (8, "b = 2\n", False),
        (12, "c = 3\n", True),
    ]


def test_cli_guide_lists_every_run_option() -> None:
    """docs/guides/cli.md documents exactly the options ``ratesim run`` accepts."""
    from ratesim.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    run = sub.choices["run"]  # type: ignore[attr-defined]
    options = {s for a in run._actions for s in a.option_strings if s.startswith("--")}
    options.discard("--help")
    text = (DOCS / "guides/cli.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(--[a-z-]+)", text, flags=re.M))
    assert table == options


# --- the API reference -----------------------------------------------------------------------

_HEADING = re.compile(r"^## `(ratesim(?:\.\w+)*)`")
_NAME = re.compile(r"`([A-Za-z_][\w.]*)(\([^`]*\))?(?: -> [^`]*)?`")


def api_entries() -> list[tuple[str, str, str | None, int]]:
    """``(module, dotted name, parameter text or None, line)`` for every name api.md lists.

    An entry is a bullet ``- `Name(params) -> ret` — text``; every backticked name before the
    dash counts (``- `A(x)`, `B(y)` — text`` lists two).
    """
    out = []
    module = None
    for n, line in enumerate((DOCS / "api.md").read_text(encoding="utf-8").splitlines(), 1):
        heading = _HEADING.match(line)
        if heading:
            module = heading.group(1)
            continue
        if module is None or not line.startswith("- `"):
            continue
        head = line[2:].split(" — ", 1)[0]
        for m in _NAME.finditer(head):
            out.append((module, m.group(1), m.group(2), n))
    return out


def split_params(text: str) -> list[str]:
    """Parameter names from ``(a: int, b=1, *, c: X[int, str] = None, **kw)``."""
    parts, depth, cur = [], 0, ""
    for ch in text[1:-1]:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    names = []
    for part in parts:
        m = re.match(r"\s*\*{0,2}([A-Za-z_]\w*)", part)
        if m:
            names.append(m.group(1))
    return names


def resolve(module: str, dotted: str) -> object:
    obj: object = importlib.import_module(module)
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def code_params(obj: object) -> tuple[list[str], list[str]]:
    """``(positional names in order, keyword-only and ** names)``, without self/cls/_private."""
    positional, keyword = [], []
    for p in inspect.signature(obj).parameters.values():  # type: ignore[arg-type]
        if p.name in ("self", "cls") or p.name.startswith("_"):
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL):
            positional.append(p.name)
        else:
            keyword.append(p.name)
    return positional, keyword


def test_api_reference_has_entries() -> None:
    entries = api_entries()
    assert len(entries) >= 150, f"docs/api.md: only {len(entries)} entries parsed"
    modules = {m for m, *_ in entries}
    for needed in ("ratesim.algorithms", "ratesim.stores", "ratesim.engine", "ratesim.results"):
        assert needed in modules


@pytest.mark.parametrize(
    "module,name,params,line",
    api_entries(),
    ids=[f"{m}.{n}" for m, n, _, _ in api_entries()],
)
def test_api_entry_matches_code(module: str, name: str, params: str | None, line: int) -> None:
    obj = resolve(module, name)
    if params is None:
        return
    documented = split_params(params)
    positional, keyword = code_params(obj)
    where = f"docs/api.md:{line}: {module}.{name}{params}"
    assert documented[: len(positional)] == positional, f"{where}: code has {positional}"
    assert sorted(documented[len(positional) :]) == sorted(keyword), f"{where}: code has {keyword}"


def test_api_reference_lists_the_root_exports() -> None:
    """Every name in ``ratesim.__all__`` appears in api.md's ``ratesim`` section, and back."""
    import ratesim

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    section = text[text.index("## `ratesim`\n") + 13 : text.index("## `ratesim.algorithms`")]
    listed = set(re.findall(r"`([A-Za-z_]\w*)(?:\(|`)", section))
    exported = set(ratesim.__all__) | {"plots", "__version__"}
    assert exported - listed == set(), "exported but not in docs/api.md"
    assert {n for n in listed if not hasattr(ratesim, n)} == set(), "in docs/api.md, not exported"


def test_readme_docs_and_notebooks_cite_only_files_in_the_repository() -> None:
    """A path quoted in backticks or a Markdown link that names a ``.md`` file exists in the repo.

    Links to files outside the repository (a ``shared/...`` working directory) are dead for
    every reader of a clone, so they are refused; web links (``http...``) are not checked.
    """
    root = DOCS.parent
    sources = [root / "README.md", *DOCS.rglob("*.md"), *(root / "notebooks").glob("*.ipynb")]
    cited = re.compile(r"(?:`|\]\()([\w./-]+\.md)(?:#[\w-]*)?(?:`|\))")
    dead = []
    for source in sources:
        for target in cited.findall(source.read_text(encoding="utf-8")):
            if target.startswith("http"):
                continue
            if not ((source.parent / target).exists() or (root / target).exists()):
                dead.append(f"{source.relative_to(root)}: {target}")
    assert dead == []
