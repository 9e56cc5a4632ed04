"""Every gallery incident's configs import and its suite has the validate contract's fields."""

from __future__ import annotations

import yaml

from ratesim import gallery


def test_every_incident_loads_and_suite_parses() -> None:
    assert len(gallery.names()) >= 3
    for name in gallery.names():
        broken, fixed, suite = gallery.load(name)
        assert broken.policy.layers and fixed.policy.layers
        data = yaml.safe_load(suite.read_text())
        assert data["replications"] >= 1 and 0 < data["confidence"] < 1
        assert data["scenarios"] and all("builtin" in s or "file" in s for s in data["scenarios"])
        assert all(isinstance(a, str) for a in data["assertions"])
