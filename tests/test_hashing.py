"""varflow's hashes are imagehash's, bit for bit, from one shared grey image."""

from __future__ import annotations

import cv2
import imagehash
import numpy as np
import pytest
from conftest import FIXTURES, skimage_photo
from PIL import Image

from varflow.duplicates import hashing
from varflow.duplicates.hashing import ImageHashes, compute_hashes, hamming, hash_distances
from varflow.images.imageio import _flatten_to_rgb
from varflow.quality.metrics import GreyImage


def imagehash_triple(im: Image.Image) -> tuple[str, str, str]:
    return str(imagehash.average_hash(im)), str(imagehash.phash(im)), str(imagehash.dhash(im))


def triple(h: ImageHashes) -> tuple[str, str, str]:
    return h.ahash, h.phash, h.dhash


@pytest.mark.parametrize("name", ["astronaut.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "camera.png"])
@pytest.mark.parametrize("size", [None, (1024, 1024), (1536, 1024), (333, 1200), (1200, 333), (40, 31)])
def test_photos_hash_exactly_like_imagehash(name, size):
    with Image.open(skimage_photo(name)) as im:
        rgb = im.convert("RGB")
    if size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    expected = imagehash_triple(rgb)
    assert triple(compute_hashes(rgb)) == expected  # PIL image
    assert triple(compute_hashes(np.asarray(rgb))) == expected  # RGB array
    grey = GreyImage.from_image(rgb)
    assert triple(compute_hashes(grey)) == expected  # shared grey
    assert triple(compute_hashes(grey.pixels)) == expected  # grey array


def test_random_shapes_hash_exactly_like_imagehash():
    """Shapes that take every path: tall images (Pillow 13 resizes those vertically first),
    sizes equal to a hash size (one pass only), tiny images (upscaling), smooth and noisy."""
    rng = np.random.default_rng(11)
    shapes = [(1, 1), (8, 8), (8, 9), (9, 8), (32, 32), (7, 200), (500, 9), (3000, 40), (40, 3000)]
    shapes += [tuple(int(x) for x in rng.integers(1, 700, 2)) for _ in range(40)]
    for h, w in shapes:
        g = rng.integers(0, 256, (h, w), dtype=np.uint8)
        if rng.random() < 0.5 and min(h, w) > 3:
            g = cv2.GaussianBlur(g, (0, 0), 2)
        assert triple(compute_hashes(g)) == imagehash_triple(Image.fromarray(g)), (h, w)


def test_the_installed_pillow_pass_order_is_reproduced():
    assert hashing._pass_order_rule() in ("pillow13", "horizontal")


def test_rgba_is_hashed_after_compositing_on_white():
    """Documented difference: imagehash drops alpha; varflow hashes what a viewer shows."""
    rgba = Image.open(FIXTURES / "good" / "half-transparent.png")
    flat = _flatten_to_rgb(rgba)
    assert triple(compute_hashes(rgba)) == imagehash_triple(flat)
    assert triple(compute_hashes(np.asarray(rgba))) == imagehash_triple(flat)
    assert triple(compute_hashes(rgba)) != imagehash_triple(rgba)


def test_hamming_distances():
    a = ImageHashes("ffffffffffffffff", "0000000000000000", "00000000000000ff")
    b = ImageHashes("fffffffffffffff0", "0000000000000000", "0000000000000000")
    assert hash_distances(a, b) == (4, 0, 8)
    assert hamming("ff", 0) == 8
    assert a.as_ints()[0] == 2**64 - 1


@pytest.mark.parametrize("path", sorted((FIXTURES / "good").iterdir()), ids=lambda p: p.name)
def test_a_files_grey_hashes_like_its_rgb(path):
    """dedup hashes the cached grey of a variation file (one decode, reused by scoring): the
    same hashes as its RGB image, whatever the file's mode (RGBA, CMYK, 16-bit, palette)."""
    from varflow.images.imageio import GREY_CACHE, load_grey, load_rgb

    GREY_CACHE.forget([str(path)])
    assert compute_hashes(load_grey(str(path))) == compute_hashes(load_rgb(path))
