"""Redis Cluster hash slots and the default slot layout (ratesim.model.cluster).

Known values come from the Redis Cluster specification; the rest is cross-checked against a
real ``redis-server`` in cluster mode (``CLUSTER KEYSLOT``) and the slot plan printed by
``redis-cli --cluster create`` (answered "no", so nothing is changed).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from ratesim.model import SLOTS, crc16_xmodem, key_slot, shard_of, shard_of_slot, slot_ranges


def crc16_bitwise(data: bytes) -> int:
    """CRC16-XMODEM straight from its definition (poly 0x1021, init 0), no lookup table."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_spec_check_value() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert key_slot("123456789") == 0x31C3 % 16384 == 12739


def test_hash_tags_per_spec() -> None:
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("{user1000}.following") == key_slot("user1000")
    # Empty first tag: the whole key is hashed.
    assert key_slot("foo{}{bar}") == crc16_bitwise(b"foo{}{bar}") % 16384
    # The tag runs from the first "{" to the first "}" after it.
    assert key_slot("foo{{bar}}zap") == crc16_bitwise(b"{bar") % 16384
    assert key_slot("foo{bar}{zap}") == key_slot("bar")
    # No closing brace: whole key.
    assert key_slot("foo{bar") == crc16_bitwise(b"foo{bar") % 16384
    assert key_slot("rl:{tenant:42}:cur") == key_slot("rl:{tenant:42}:prev")


def test_bytes_and_text_keys_agree() -> None:
    assert key_slot("ключ{é}") == key_slot("ключ{é}".encode())
    assert key_slot(b"") == 0
    with pytest.raises(ValueError, match="key"):
        key_slot(42)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_table_crc_matches_bitwise_definition(data: bytes) -> None:
    assert crc16_xmodem(data) == crc16_bitwise(data)
    assert 0 <= key_slot(data) < SLOTS


def test_three_shards_have_the_well_known_ranges() -> None:
    assert slot_ranges(3) == ((0, 5460), (5461, 10922), (10923, 16383))
    assert slot_ranges(1) == ((0, 16383),)


@pytest.mark.parametrize("shards", [1, 2, 3, 5, 7, 10, 13, 100, 16383, 16384])
def test_ranges_are_contiguous_and_equal(shards: int) -> None:
    ranges = slot_ranges(shards)
    assert len(ranges) == shards
    assert ranges[0][0] == 0 and ranges[-1][1] == SLOTS - 1
    for (_, last), (first, _) in zip(ranges, ranges[1:], strict=False):
        assert first == last + 1
    sizes = [last - first + 1 for first, last in ranges]
    assert max(sizes) - min(sizes) <= 1
    # shard_of_slot agrees with the ranges at every boundary.
    for i, (first, last) in enumerate(ranges):
        assert shard_of_slot(first, shards) == i
        assert shard_of_slot(last, shards) == i


def test_shard_of_key_uses_its_slot() -> None:
    for key in ("a", "user:17", "{user1000}.following", "123456789"):
        slot = key_slot(key)
        first_last = slot_ranges(4)[shard_of(key, 4)]
        assert first_last[0] <= slot <= first_last[1]
    assert shard_of("123456789", 3) == 2  # slot 12739 is in 10923-16383
    assert shard_of("anything", 1) == 0


@pytest.mark.parametrize("bad", [0, -1, 16385, 2.0, True, "3"])
def test_shards_validation(bad: object) -> None:
    with pytest.raises(ValueError, match="shards"):
        shard_of("k", bad)  # type: ignore[arg-type]


def test_slot_validation() -> None:
    with pytest.raises(ValueError, match="slot"):
        shard_of_slot(16384, 3)
    with pytest.raises(ValueError, match="slot"):
        shard_of_slot(-1, 3)


# --- cross-check against a real Redis in cluster mode ------------------------------------

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
NODES = 7
NO_RETRY = Retry(NoBackoff(), 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """One empty cluster-mode redis-server answering PING; retried on a port race."""
    assert REDIS_SERVER is not None, "redis-server must be on PATH"
    log = workdir / "redis.log"
    for _ in range(5):
        port = free_port()
        cmd = [
            REDIS_SERVER,
            "--port", str(port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(workdir / f"nodes-{port}.conf"),
            "--dir", str(workdir), "--save", "", "--appendonly", "no",
            "--logfile", str(log),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # No client-side retries: a refused connection must fail fast here.
        client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, retry=NO_RETRY)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return proc, port
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        proc.kill()
        proc.wait(timeout=10)
    log_text = log.read_text() if log.exists() else "(no log)"
    raise RuntimeError(f"redis-server did not start in {workdir}:\n{log_text[-2000:]}")


@pytest.fixture(scope="module")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """``NODES`` empty cluster-mode redis-servers (no slots assigned); killed by pid after."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for i in range(NODES):
            proc, port = start_node(tmp_path_factory.mktemp(f"node{i}"))
            procs.append(proc)
            ports.append(port)
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def test_key_slot_matches_real_cluster_keyslot(cluster_nodes: list[int]) -> None:
    client = redis.Redis(port=cluster_nodes[0], socket_timeout=5, retry=NO_RETRY)
    gen = np.random.default_rng(2024)
    alphabet = list("abcxyz019:{}_-") + ["é", "中"]
    keys = ["123456789", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "{}", "}{", ""]
    for _ in range(400):
        length = int(gen.integers(0, 24))
        keys.append("".join(alphabet[int(i)] for i in gen.integers(0, len(alphabet), length)))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("CLUSTER", "KEYSLOT", key)
    real = pipe.execute()
    client.close()
    mismatches = [(k, r, key_slot(k)) for k, r in zip(keys, real, strict=True) if r != key_slot(k)]
    assert mismatches == []


@pytest.mark.parametrize("shards", [3, 4, 5, 6, 7])
def test_slot_ranges_match_redis_cli_plan(cluster_nodes: list[int], shards: int) -> None:
    assert REDIS_CLI is not None, "redis-cli must be on PATH"
    addrs = [f"127.0.0.1:{p}" for p in cluster_nodes[:shards]]
    # Without --cluster-yes and with "no" on stdin, redis-cli prints its plan and changes nothing.
    run = subprocess.run(
        [REDIS_CLI, "--cluster", "create", *addrs, "--cluster-replicas", "0"],
        input=b"no\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    plan = re.findall(r"Master\[(\d+)\] -> Slots (\d+) - (\d+)", run.stdout.decode())
    assert len(plan) == shards, run.stdout.decode()
    assert tuple((int(a), int(b)) for _, a, b in plan) == slot_ranges(shards)
