"""HashIndex answers exactly what a full XOR + popcount scan answers."""

from __future__ import annotations

import numpy as np
import pytest

from varflow.duplicates.hashindex import HashIndex, popcount64, to_uint64


def flip(value: int, k: int, rng) -> int:
    for b in rng.choice(64, size=k, replace=False):
        value ^= 1 << int(b)
    return value


def brute(hashes: list[int], keys: list, q: int, radius: int) -> list:
    """Nearest first, ties in insertion order, by plain Python integers."""
    hits = [(d, i) for i, h in enumerate(hashes) if (d := (h ^ q).bit_count()) <= radius]
    return [(keys[i], d) for d, i in sorted(hits)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    hashes = [int(x) for x in rng.integers(0, 2**63, size=20000, dtype=np.int64)]
    hashes = [h | (1 << 63) if i % 3 == 0 else h for i, h in enumerate(hashes)]  # top bit too
    queries = hashes[:25]
    for q in queries:  # planted neighbours at every distance up to 24
        for d in range(25):
            hashes.append(flip(q, d, rng))
    keys = [f"k{i}" for i in range(len(hashes))]
    return hashes, keys, queries


@pytest.mark.parametrize("radius", [0, 1, 3, 4, 7, 10, 12, 16, 19, 20, 24, 64])
def test_query_equals_brute_force(data, radius):
    hashes, keys, queries = data
    index = HashIndex()
    index.add(keys, hashes)
    for q in queries:
        got = index.query(q, radius)
        assert got == brute(hashes, keys, q, radius)
        assert got == index.scan(q, radius)


@pytest.mark.parametrize("radius", [0, 4, 12, 19, 24])
@pytest.mark.parametrize("size", [3000, 20000])  # scanned (under _MIN_INDEXED), probed at radius <= 12
def test_query_many_equals_query(data, radius, size):
    hashes, keys, queries = data
    index = HashIndex()
    index.add(keys[:size], hashes[:size])
    index.add(keys[size:size + 300], hashes[size:size + 300])  # an unindexed tail
    q = queries + hashes[size + 10:size + 20]
    rows, found = index.query_many(np.array(q, np.uint64), radius, block=7)
    got = sorted(zip(rows.tolist(), found.tolist(), strict=True))
    assert len(got) == len(set(got))
    want = sorted((r, k) for r, h in enumerate(q) for k, _ in index.query(h, radius))
    assert got == want and want


def test_incremental_adds_stay_exact(data):
    """Hashes added after the tables were built (the unsorted tail) are found too."""
    hashes, keys, queries = data
    index = HashIndex()
    for start in range(0, len(hashes), 1777):
        index.add(keys[start : start + 1777], hashes[start : start + 1777])
        seen_h, seen_k = hashes[: start + 1777], keys[: start + 1777]
        for q in queries[:5]:
            assert index.query(q, 10) == brute(seen_h, seen_k, q, 10)
    assert len(index) == len(hashes)


def test_hex_strings_uint64_arrays_and_any_keys():
    index = HashIndex()
    index.add(["a", ("t", 1)], ["ffffffffffffffff", "0000000000000001"])
    index.add([3], np.array([2**63], dtype=np.uint64))
    assert index.query("fffffffffffffffe", 1) == [("a", 1)]
    assert index.query(0, 1) == [(("t", 1), 1), (3, 1)]
    assert index.query(2**63 + 1, 2) == [(("t", 1), 1), (3, 1)]
    assert index.query(2**63 + 3, 1) == []  # 2 bits from both of them
    assert HashIndex().query(5, 10) == []


def test_bad_input_is_refused_clearly():
    index = HashIndex()
    with pytest.raises(ValueError, match="2 keys but 1 hashes"):
        index.add(["a", "b"], [1])
    with pytest.raises(ValueError, match="64 bits"):
        index.add(["a"], [2**64])
    with pytest.raises(ValueError, match="radius"):
        index.query(1, 65)


def test_popcount():
    x = np.array([0, 1, 2**64 - 1, 0xF0F0], dtype=np.uint64)
    assert popcount64(x).tolist() == [0, 1, 64, 8]
    assert to_uint64("ff") == 255
