"""Every batch script in experiments/ runs at small size and writes its Parquet and PNG files;
``--help`` documents every option (issue 14)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_"))
#: What each script must write at small size (stems; each as .parquet and/or .png).
EXPECTED = {
    "exchange_surge": {
        "parquet": ["summary", "vs_oracle", "timeseries", "time_source"],
        "png": ["timeline", "grid", "time_source"],
    },
    "coupling_map": {
        "parquet": ["first_trip", "masking", "coupling_map"],
        "png": ["masking", "coupling_map"],
    },
    "clock_drift": {
        "parquet": ["offset_sweep", "remedies"],
        "png": ["nodes", "offset_sweep", "remedies"],
    },
    "failure_modes": {
        "parquet": [
            "outage_modes",
            "saturation",
            "degradation_order",
            "store_breaker",
            "breaker_order",
            "autoscale",
            "retry_storm",
        ],
        "png": [
            "outage_modes",
            "failover",
            "saturation",
            "degradation_order",
            "store_breaker",
            "breaker_order",
            "autoscale",
            "retry_storm",
        ],
    },
    "validate_config": {"parquet": ["assertions", "redis_replay"], "png": ["oracle_gap"]},
    "incident_gallery": {
        "parquet": ["incidents", "replays", "kong_pods"],
        "png": [
            "incidents",
            "replays",
            "envoy-ratelimit-redis-outage",
            "sentinel-cluster-fallback",
            "kong_pods",
        ],
    },
    "pool_sizing": {"parquet": ["pool_sizing", "pool_sizing_runs"], "png": ["pool_sizing"]},
}


def _run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_every_script_is_covered() -> None:
    assert sorted(p.stem for p in SCRIPTS) == sorted(EXPECTED)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_help_documents_every_option(script: Path) -> None:
    out = _run(script, "--help")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    options = [i for i, line in enumerate(lines) if re.match(r"^\s{2}--?\w", line)]
    assert any("--small" in lines[i] for i in options) and any("--out" in lines[i] for i in options)
    for i in options:
        # argparse puts the help text after the option on its line, or on the next line
        has_text = re.search(r"\S\s{2,}\S", lines[i].strip()) or (
            i + 1 < len(lines) and lines[i + 1].startswith(" " * 10)
        )
        assert has_text, f"{script.name}: option without help: {lines[i].strip()}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_runs_small_and_writes_parquet_and_png(script: Path, tmp_path: Path) -> None:
    out = _run(script, "--small", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    want = EXPECTED[script.stem]
    for stem in want["parquet"]:
        table = pd.read_parquet(tmp_path / f"{stem}.parquet")
        assert len(table) > 0, f"{stem}.parquet is empty"
    for stem in want["png"]:
        data = (tmp_path / f"{stem}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, stem
    if script.stem == "failure_modes":
        # the breaker's threshold below the backend's response time at saturation: the
        # breaker engages and the concurrency limit never does; above it, the other way round
        order = pd.read_parquet(tmp_path / "breaker_order.parquet")
        below, above = sorted(set(order["max_rt_s"]))
        engaged = order.set_index(["max_rt_s", "layer"])["never_engages"]
        assert not engaged[below, "breaker"] and engaged[below, "concurrency"]
        assert engaged[above, "breaker"] and not engaged[above, "concurrency"]
        # the store breaker: far fewer decisions wait the timeout, the same failure mode
        spike = pd.read_parquet(tmp_path / "store_breaker.parquet").set_index("scenario")
        plain, guarded = spike.loc["latency-spike"], spike.loc["latency-spike-breaker"]
        assert guarded["waited_timeout"] * 10 < plain["waited_timeout"] == plain["fail_open"]
        # the retry storm, same user requests under every reaction: retrying at once multiplies
        # the attempts, backing off less so, honouring Retry-After least (a 1 s wait: at most
        # one retry within the 1.5 s deadline); without retries every user request is one attempt
        storm = pd.read_parquet(tmp_path / "retry_storm.parquet").set_index("reaction")
        assert storm["user_requests"].nunique() == 1
        assert (storm["attempts"] >= storm["user_requests"]).all()
        per = storm["attempts"] / storm["user_requests"]
        assert per.to_dict() == pytest.approx(storm["attempts_per_request"].to_dict())
        assert per["none"] == 1
        assert per["immediate"] > per["backoff"] > per["retry_after"] > 1
        assert per["retry_after"] <= 2
        # a 20% retry budget caps the retries at a fifth of the user requests
        assert per["immediate, budget 20%"] <= 1.2
        # goodput: waiting for the surge to pass (Retry-After, backoff) gets more user requests
        # through than retrying into it, where the limiter admits its rate whoever asks
        assert storm.loc["retry_after", "goodput"] > storm.loc["immediate", "goodput"]
        assert storm.loc["backoff", "goodput"] > storm.loc["immediate", "goodput"]
    if script.stem == "incident_gallery":
        # every incident of the gallery ran its suite: the broken config fails, the fixed passes
        from ratesim import gallery

        table = pd.read_parquet(tmp_path / "incidents.parquet")
        assert sorted(set(table["incident"])) == gallery.names()
        verdict = table.groupby(["incident", "config"])["passed"].all()
        assert not verdict.xs("broken", level="config").any()
        assert verdict.xs("fixed", level="config").all()
    if script.stem == "validate_config":
        # ratesim.validate's --redis parity on the real redis-server the script started: the
        # compat layer decides as the model's oracle; the config as written fails its suite
        replay = pd.read_parquet(tmp_path / "redis_replay.parquet").iloc[0]
        assert replay["decisions"] > 0
        assert bool(replay["identical"]) and replay["differing"] == 0
        table = pd.read_parquet(tmp_path / "assertions.parquet")
        verdict = table.groupby("variant")["passed"].all()
        assert not verdict["as written"] and verdict["shared in Redis"]


def test_a_bad_option_value_is_a_clear_error_not_a_traceback() -> None:
    out = _run(ROOT / "experiments" / "coupling_map.py", "--x", "tier_quota:4:1")
    assert out.returncode == 2
    assert "need 0 < LOW < HIGH" in out.stderr and "Traceback" not in out.stderr
