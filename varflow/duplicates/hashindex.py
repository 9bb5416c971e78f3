"""An in-memory index of 64-bit perceptual hashes for Hamming-radius queries.

Multi-index hashing (Norouzi, Punjani and Fleet, "Fast search in Hamming space with multi-index
hashing", CVPR 2012): each hash is cut into four 16-bit chunks, and each chunk position has a
table from chunk value to the hashes that carry it. If two hashes differ in at most ``r`` bits,
one of their four chunks differs in at most ``r // 4`` bits (otherwise they would differ in at
least ``4 * (r // 4 + 1) > r``), so probing, for every chunk, the chunk values within
``r // 4`` bits of the query's finds every neighbour; the candidates are then checked with an
exact XOR + popcount. At radius 10 that is 4 x 137 probes of tables holding ~n / 65536 hashes
each, instead of a scan of all n. The result is exact (recall 1.0), not approximate.

Hashes added after the tables were built go to a small unsorted tail that is scanned directly;
the tables are rebuilt when the tail grows past an eighth of the indexed hashes. Radii too large
for probing to pay (over 19 bits) fall back to a full scan, which is also exact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from itertools import combinations

import numpy as np

_CHUNKS = 4
_CHUNK_BITS = 16
_TABLE = 1 << _CHUNK_BITS
_MASK = np.uint64(_TABLE - 1)
_MAX_PROBE_RADIUS = 4  # per chunk: 1 + 16 + 120 + 560 + 1820 values; beyond that, scan
_MIN_INDEXED = 4096  # below this many hashes a scan is as fast as the tables
_SCAN_PER_PROBE = 8  # query_many scans while the index holds under 8 hashes per probe (radius 12: ~22,000)


def _popcount_lut() -> np.ndarray:
    return np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


_LUT = _popcount_lut()


def popcount64(x: np.ndarray) -> np.ndarray:
    """Bits set in each uint64 (numpy >= 2 has a ufunc for it; older numpy uses a table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _LUT[x.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.uint8).reshape(x.shape)


def to_uint64(value: int | str | np.integer) -> np.uint64:
    """A 64-bit hash from an int or imagehash's 16-digit hex string."""
    if isinstance(value, str):
        value = int(value, 16)
    value = int(value)
    if not 0 <= value < 1 << 64:
        raise ValueError(f"hash {value!r} does not fit in 64 bits")
    return np.uint64(value)


def _masks(radius: int) -> np.ndarray:
    """Every 16-bit XOR mask with at most ``radius`` bits set."""
    masks = [0]
    for k in range(1, radius + 1):
        for bits in combinations(range(_CHUNK_BITS), k):
            m = 0
            for b in bits:
                m |= 1 << b
            masks.append(m)
    return np.array(masks, dtype=np.uint64)


_MASK_CACHE = {r: _masks(r) for r in range(_MAX_PROBE_RADIUS + 1)}
_SHIFTS = np.arange(_CHUNKS, dtype=np.uint64) * np.uint64(_CHUNK_BITS)
_BASES = (np.arange(_CHUNKS, dtype=np.int64) * _TABLE)[:, None]


class HashIndex:
    """Keys with 64-bit hashes; ``query(hash, radius)`` returns every key within ``radius`` bits.

    Thread safe: queries may run while another thread adds.
    """

    def __init__(self) -> None:
        self._keys: list = []
        self._hashes = np.empty(0, dtype=np.uint64)
        self._n = 0  # hashes in use (the array has spare capacity)
        self._indexed = 0  # hashes covered by the chunk tables
        self._order = np.empty(0, dtype=np.int32)  # positions sorted by (chunk, chunk value)
        self._starts = np.zeros(1, dtype=np.int64)  # first entry of each (chunk, value)
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self._n

    def add(self, keys: Sequence, hashes: Iterable) -> None:
        """Add ``keys[i]`` with ``hashes[i]`` (ints, hex strings or a uint64 array)."""
        keys = list(keys)
        if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64:
            values = hashes.ravel()
        else:
            values = np.array([to_uint64(h) for h in hashes], dtype=np.uint64)
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys but {len(values)} hashes; pass one hash per key")
        if not keys:
            return
        with self._lock:
            need = self._n + len(values)
            if need > len(self._hashes):
                grown = np.empty(max(need, 2 * len(self._hashes), 1024), dtype=np.uint64)
                grown[: self._n] = self._hashes[: self._n]
                self._hashes = grown
            self._hashes[self._n : need] = values
            self._keys.extend(keys)
            self._n = need
            tail = self._n - self._indexed
            if self._n >= _MIN_INDEXED and tail * 8 > max(self._indexed, _MIN_INDEXED):
                self._rebuild()

    def _rebuild(self) -> None:
        h = self._hashes[: self._n]
        n = self._n
        # one table for the four chunk positions: chunk c's values live at c * 65536 + value
        order = np.empty(_CHUNKS * n, dtype=np.int32)
        starts = np.empty(_CHUNKS * _TABLE + 1, dtype=np.int64)
        starts[0] = 0
        for c in range(_CHUNKS):
            chunk = ((h >> np.uint64(c * _CHUNK_BITS)) & _MASK).astype(np.int64)
            order[c * n : (c + 1) * n] = np.argsort(chunk, kind="stable")
            counts = np.bincount(chunk, minlength=_TABLE)
            np.cumsum(counts, out=starts[c * _TABLE + 1 : (c + 1) * _TABLE + 1])
            starts[c * _TABLE + 1 : (c + 1) * _TABLE + 1] += c * n
        self._order, self._starts, self._indexed = order, starts, n

    def _candidates(self, q: np.uint64, radius: int) -> np.ndarray:
        """Positions whose hash shares a chunk within radius // 4 bits (may repeat)."""
        masks = _MASK_CACHE[radius // _CHUNKS]
        values = (np.uint64(q) >> _SHIFTS) & _MASK  # the query's four chunks
        probes = ((values[:, None] ^ masks[None, :]).astype(np.int64) + _BASES).ravel()
        lo = self._starts[probes]
        sizes = self._starts[probes + 1] - lo
        keep = sizes > 0
        lo, sizes = lo[keep], sizes[keep]
        total = int(sizes.sum())
        if total == 0:
            return np.empty(0, dtype=np.int32)
        # positions lo[i] .. lo[i] + sizes[i] - 1 of every probe, without a Python loop
        ends = np.cumsum(sizes)
        offsets = np.repeat(lo - ends + sizes, sizes)
        offsets += np.arange(total)
        return self._order[offsets]

    def query(self, hash_value, radius: int) -> list[tuple[object, int]]:
        """Every (key, distance) with distance <= ``radius``, nearest first."""
        if not 0 <= radius <= 64:
            raise ValueError(f"radius {radius} must be between 0 and 64 bits")
        q = to_uint64(hash_value)
        with self._lock:
            n, indexed = self._n, self._indexed
            hashes = self._hashes[:n]
            if radius // _CHUNKS > _MAX_PROBE_RADIUS or indexed == 0:
                pos = np.arange(n)
                d = popcount64(hashes ^ q)
            else:
                cand = self._candidates(q, radius)
                if indexed < n:
                    cand = np.concatenate([cand, np.arange(indexed, n, dtype=np.int32)])
                d = popcount64(hashes[cand] ^ q)
                pos = cand
            hit = d <= radius
            pos, d = pos[hit], d[hit]
            if len(pos) > 1:  # a neighbour is found once per chunk it shares
                pos, first = np.unique(pos, return_index=True)
                d = d[first]
            order = np.lexsort((pos, d))
            keys = self._keys
            return [(keys[int(pos[i])], int(d[i])) for i in order]

    def query_many(self, hashes: np.ndarray, radius: int, *, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Every (query row, key) with ``popcount(hashes[row] ^ key's hash) <= radius``, as two
        arrays, each pair once: ``query`` for a whole array of hashes, probing a block of queries
        per numpy call (one call per query cost 4x the probing itself among 10,000 hashes)."""
        if not 0 <= radius <= 64:
            raise ValueError(f"radius {radius} must be between 0 and 64 bits")
        hashes = np.asarray(hashes, dtype=np.uint64).ravel()
        rows_out, keys_out = [], []
        with self._lock:
            n, indexed = self._n, self._indexed
            stored = self._hashes[:n]
            masks = _MASK_CACHE.get(radius // _CHUNKS)
            # probing pays when a query's probes are few beside the hashes a scan would compare
            probe = masks is not None and indexed > _SCAN_PER_PROBE * _CHUNKS * len(masks)
            for r0 in range(0, len(hashes), block):
                q = hashes[r0:r0 + block]
                if not probe:
                    # flat: np.nonzero on the 2-D mask cost 13x (most of a scan of 10,000)
                    rows, pos = np.divmod(np.flatnonzero(popcount64(q[:, None] ^ stored[None, :]) <= radius), n)
                else:
                    rows, pos = self._candidates_many(q, masks)
                    if indexed < n:  # the unindexed tail: scanned
                        tr, tp = np.nonzero(np.ones((len(q), n - indexed), bool))
                        rows, pos = np.concatenate([rows, tr]), np.concatenate([pos, tp + indexed])
                    hit = popcount64(q[rows] ^ stored[pos]) <= radius
                    rows, pos = rows[hit], pos[hit]
                    pair = np.unique(rows.astype(np.int64) * n + pos)  # found once per chunk it shares
                    rows, pos = pair // n, pair % n
                rows_out.append(rows + r0)
                keys_out.append(pos)
            keys = self._keys
        if not rows_out:
            return np.empty(0, np.int64), np.empty(0, object)
        pos = np.concatenate(keys_out)
        return np.concatenate(rows_out).astype(np.int64), np.array([keys[int(i)] for i in pos], dtype=object)

    def _candidates_many(self, q: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, position) of every indexed hash sharing a probed chunk value (may repeat)."""
        values = (q[:, None] >> _SHIFTS[None, :]) & _MASK  # [m, 4] chunks
        probes = ((values[:, :, None] ^ masks[None, None, :]).astype(np.int64) + _BASES[None]).reshape(len(q), -1)
        lo = self._starts[probes]
        sizes = self._starts[probes + 1] - lo
        keep = sizes > 0
        rows = np.broadcast_to(np.arange(len(q))[:, None], probes.shape)[keep]
        lo, sizes = lo[keep], sizes[keep]
        total = int(sizes.sum())
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        ends = np.cumsum(sizes)
        offsets = np.repeat(lo - ends + sizes, sizes)
        offsets += np.arange(total)
        return np.repeat(rows, sizes), self._order[offsets].astype(np.int64)

    def scan(self, hash_value, radius: int) -> list[tuple[object, int]]:
        """The same answer as ``query`` by a full XOR + popcount scan (a reference for tests)."""
        q = to_uint64(hash_value)
        with self._lock:
            d = popcount64(self._hashes[: self._n] ^ q)
            pos = np.flatnonzero(d <= radius)
            d = d[pos]
            order = np.lexsort((pos, d))
            return [(self._keys[int(pos[i])], int(d[i])) for i in order]
