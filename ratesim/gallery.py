"""The incident gallery: gateway configs as their users wrote them (``broken``), fixed, and
the suite exposing each (``gallery/<incident>/``; see gallery/README.md).

The gallery lives in the source repository, not in the wheel: :data:`ROOT` is the ``gallery``
directory next to the package, and :func:`names` is empty when it is absent (an installed wheel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .importers import Imported
from .importers import load as _import

ROOT = Path(__file__).resolve().parent.parent / "gallery"


def names() -> list[str]:
    """The incidents, sorted (directory names under :data:`ROOT`)."""
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.iterdir() if (p / "suite.yaml").is_file())


def path(name: str) -> Path:
    """The directory of incident ``name``; ValueError if there is none."""
    if name not in names():
        known = ", ".join(names()) or f"none ({ROOT} is absent: the gallery is in the repository)"
        raise ValueError(f"gallery: unknown incident {name!r}; known: {known}")
    return ROOT / name


def load(name: str) -> tuple[Imported, Imported, Path]:
    """``(broken, fixed, suite path)`` of incident ``name``, imported with ratesim.importers
    (with the suite's ``importer`` options: what the config cannot say about the deployment,
    e.g. Sentinel's ``nodes``)."""
    from .validate import load_suite

    d = path(name)
    broken = next(d.glob("broken.*"))
    fixed = next(d.glob("fixed.*"))
    options: dict[str, Any] = dict(load_suite(d / "suite.yaml").spec.importer)
    return _import(broken, **options), _import(fixed, **options), d / "suite.yaml"
