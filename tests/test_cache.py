"""The content-keyed variation cache: keys, hits, vanished files, LRU eviction by real bytes."""

import multiprocessing
import os
import time

import pytest

from varflow.generation.cache import VariationCache, generation_key

BASE = dict(image_id="a" * 64, backend="local", model="local-v1", variation_type="style_change",
            prompt="golden hour", seed=7, max_image_size=1536)


def blob(tmp_path, name, size):
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


def test_key_is_full_sha256_and_changes_with_every_output_parameter():
    key = generation_key(**BASE)
    assert len(key) == 64 and key == generation_key(**BASE)
    for field, other in [("image_id", "b" * 64), ("backend", "gemini"), ("model", "m2"),
                         ("variation_type", "composition"), ("prompt", "night"), ("seed", 8),
                         ("max_image_size", 1024)]:
        assert generation_key(**{**BASE, field: other}) != key, field
    assert generation_key(**BASE, extra={"format": "webp"}) != key


def test_put_then_get_returns_the_bytes(tmp_path):
    cache = VariationCache(tmp_path / "c", max_bytes=10_000)
    src = blob(tmp_path, "v.png", 100)
    assert cache.get("k1") is None
    entry = cache.put("k1", src, {"prompt": "p"})
    hit = cache.get("k1")
    assert hit.path.read_bytes() == src.read_bytes() and hit.meta == {"prompt": "p"} and hit.size == 100
    assert entry.path == hit.path and hit.path.suffix == ".png"


def test_an_entry_whose_file_vanished_is_dropped(tmp_path):
    cache = VariationCache(tmp_path / "c", max_bytes=10_000)
    entry = cache.put("k1", blob(tmp_path, "v.png", 100))
    entry.path.unlink()
    assert cache.get("k1") is None and len(cache) == 0


def test_eviction_is_least_recently_used_down_to_80_percent_by_file_bytes(tmp_path):
    cache = VariationCache(tmp_path / "c", max_bytes=1000)
    for i in range(4):
        cache.put(f"k{i}", blob(tmp_path, f"v{i}.png", 240))
        time.sleep(0.01)
    cache.get("k0")  # k0 becomes the most recently used
    cache.put("k4", blob(tmp_path, "v4.png", 240))  # 1200 bytes > 1000: evict to <= 800
    remaining = {k for k in ("k0", "k1", "k2", "k3", "k4") if cache.get(k)}
    assert remaining == {"k0", "k3", "k4"}
    assert cache.total_bytes() == 720 <= 800
    on_disk = sum(p.stat().st_size for p in (tmp_path / "c" / "files").rglob("*") if p.is_file())
    assert on_disk == 720


def _writer(root, n, worker):
    cache = VariationCache(root, max_bytes=50_000)
    for i in range(n):
        p = root.parent / f"src-{worker}-{i}.bin"
        p.write_bytes(os.urandom(1000))
        cache.put(f"w{worker}-{i}", p)
        cache.get(f"w{1 - worker}-{i}")


def test_two_processes_at_once_never_corrupt_the_index(tmp_path):
    root = tmp_path / "c"
    VariationCache(root, max_bytes=50_000)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(root, 60, w)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = VariationCache(root, max_bytes=50_000)
    assert cache.total_bytes() <= 50_000
    files = {p.name.split(".")[0] for p in (root / "files").rglob("*") if p.is_file()}
    keys = {k for w in (0, 1) for k in (f"w{w}-{i}" for i in range(60)) if cache.get(k)}
    assert keys == files  # every entry has its file and every file its entry


def test_limit_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="must be positive"):
        VariationCache(tmp_path, max_bytes=0)
