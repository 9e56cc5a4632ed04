"""One key rule for both stores (``ratesim.stores.normalize_key``).

Redis keys are byte strings, so ``777`` and ``"777"`` were always one Redis key, while
``MemoryStore`` keyed a dict by the Python object and kept two states: the stores disagreed.
Now both use the key's text: a ``str`` as is, an ``int`` (numpy integers too) as ``str(int)``;
anything else is a ``ValueError``, and so is text that has no UTF-8 form (a lone surrogate),
which used to raise ``UnicodeEncodeError`` from deep inside the Redis store even under
``failure_mode="open"`` and was silently accepted by the memory store.
"""

from __future__ import annotations

import numpy as np
import pytest

from ratesim.algorithms import GCRA
from ratesim.stores import MemoryStore, RedisStore, normalize_key

T0_US = 1_700_000_000_000_000
LIM = GCRA(2, 1, 60)  # 3 at once, then one a minute


@pytest.fixture(params=["memory", "redis"])
def store(request, redis_url: str) -> MemoryStore | RedisStore:
    if request.param == "memory":
        return MemoryStore()
    return RedisStore.from_url(redis_url, failure_mode="open")


def test_normalize_key_rule() -> None:
    assert normalize_key("777") == "777"
    assert normalize_key(777) == "777"
    assert normalize_key(-5) == "-5"
    assert normalize_key(np.int64(777)) == "777"
    assert normalize_key(np.uint8(7)) == "7"
    assert type(normalize_key(np.str_("ab"))) is str
    assert normalize_key("ключ🙂") == "ключ🙂"
    assert normalize_key("") == ""


@pytest.mark.parametrize(
    "key", [True, np.bool_(False), 1.0, b"777", bytearray(b"x"), ("tier", "user"), None, 1j]
)
def test_other_key_types_are_refused(key: object) -> None:
    with pytest.raises(ValueError, match="key must be a str or an int"):
        normalize_key(key)


def test_int_and_str_spellings_are_one_key(store: MemoryStore | RedisStore) -> None:
    """777, "777" and np.int64(777) share one state on either store: the third call sees the
    two before it (remaining 2 -> 1 -> 0), and the fourth is refused."""
    got = [store.acquire(LIM, k, T0_US) for k in (777, "777", np.int64(777), "777")]
    assert [(d.allowed, d.remaining) for d in got] == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert store.acquire(LIM, "778", T0_US).remaining == 2  # another key entirely


def test_stores_agree_on_mixed_spellings(redis_url: str) -> None:
    memory = MemoryStore()
    redis_store = RedisStore.from_url(redis_url)
    keys: list[object] = [1, "1", np.int32(1), 2, "2", "x", 1, np.int64(2), "1"]
    times = [T0_US + i * 5_000_000 for i in range(len(keys))]
    expected = [memory.acquire(LIM, k, t) for k, t in zip(keys, times, strict=True)]
    assert redis_store.acquire_many(LIM, keys, times) == expected
    assert redis_store.key_for(LIM, 1) == redis_store.key_for(LIM, "1")
    assert memory.state_of(LIM, 1) == memory.state_of(LIM, "1") == redis_store.state_of(LIM, 1)
    memory.reset(LIM, np.int64(1))
    assert memory.state_of(LIM, "1") is None


@pytest.mark.parametrize("key", ["\udc80", "user\ud800", "\udfff-tail"])
def test_lone_surrogate_is_a_clear_value_error(store: MemoryStore | RedisStore, key: str) -> None:
    """Bad input, not a store failure: a plain ValueError naming the key's problem, on both
    stores and under failure_mode="open" (it is not a UnicodeEncodeError any more)."""
    with pytest.raises(ValueError, match="lone surrogate") as info:
        store.acquire(LIM, key, T0_US)
    assert type(info.value) is ValueError
    assert repr(key) in str(info.value)


def test_lone_surrogate_in_a_batch_sends_nothing(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    with pytest.raises(ValueError, match="lone surrogate"):
        store.acquire_many(LIM, ["ok", "bad\udc80"], [T0_US, T0_US])
    assert store.state_of(LIM, "ok") is None  # the valid key before it was not charged
    assert not store.errors


def test_valid_unicode_keys_round_trip(store: MemoryStore | RedisStore) -> None:
    for key in ("ключ", "🙂", "a b\tc", "{brace}"):
        assert store.acquire(LIM, key, T0_US).remaining == 2
        assert store.acquire(LIM, key, T0_US).remaining == 1


def test_redis_key_holds_the_utf8_text(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    store.acquire(LIM, "ключ", T0_US)
    raw = store.key_for(LIM, "ключ").encode("utf-8")
    assert store.client.exists(raw) == 1
