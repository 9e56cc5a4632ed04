"""The incident gallery: gateway configs as their users wrote them (``broken``), fixed, and
the suite exposing each (``gallery/<incident>/``; see gallery/README.md)."""

from __future__ import annotations

from pathlib import Path

from .importers import Imported
from .importers import load as _import

ROOT = Path(__file__).resolve().parent.parent / "gallery"


def names() -> list[str]:
    """The incidents, sorted (directory names under :data:`ROOT`)."""
    return sorted(p.name for p in ROOT.iterdir() if (p / "suite.yaml").is_file())


def path(name: str) -> Path:
    """The directory of incident ``name``; ValueError if there is none."""
    if name not in names():
        raise ValueError(f"gallery: unknown incident {name!r}; known: {', '.join(names())}")
    return ROOT / name


def load(name: str) -> tuple[Imported, Imported, Path]:
    """``(broken, fixed, suite path)`` of incident ``name``, imported with ratesim.importers."""
    d = path(name)
    broken = next(d.glob("broken.*"))
    fixed = next(d.glob("fixed.*"))
    return _import(broken), _import(fixed), d / "suite.yaml"
