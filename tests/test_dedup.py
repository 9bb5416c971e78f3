"""The near-duplicate detector on real photos: transformed copies are found, look-alikes are not."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from conftest import skimage_photo
from PIL import Image, ImageEnhance, ImageFilter

from varflow.duplicates.dedup import (
    KnownImage,
    KnownImageIndex,
    LibraryView,
    appearance_signature,
    colour_distance,
    confirmation_ssim,
    find_duplicate,
)
from varflow.duplicates.hashing import compute_hashes, hash_distances
from varflow.images.imageio import load_rgb
from varflow.quality.metrics import GreyImage, to_grey
from varflow.settings import COPY_FINDING, DedupSettings

DEFAULTS = COPY_FINDING  # varflow dedup's copies; a run's variations: RUN
RUN = DedupSettings()


def rgb(name: str) -> Image.Image:
    return load_rgb(skimage_photo(name))


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def edits(im: Image.Image) -> dict[str, Image.Image]:
    """The evaluation set's edits (bench/dedup_quality.py)."""
    w, h = im.size
    a = np.asarray(im).astype(np.float32)
    rng = np.random.default_rng(0)
    return {
        "resize50": im.resize((w // 2, h // 2), Image.Resampling.LANCZOS),
        "jpeg40": jpeg(im, 40),
        "crop4": im.crop((round(w * 0.02), round(h * 0.02), w - round(w * 0.02), h - round(h * 0.02))),
        "rot2": im.rotate(2, resample=Image.Resampling.BICUBIC),
        "bright": ImageEnhance.Brightness(im).enhance(1.2),
        "noise": Image.fromarray(np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8)),
        "blur": Image.fromarray(cv2.GaussianBlur(np.asarray(im), (0, 0), 1.5)),
        "upscale": im.resize((round(w * 1.5), round(h * 1.5)), Image.Resampling.LANCZOS),
    }


def is_duplicate(a: Image.Image, b: Image.Image, settings: DedupSettings = DEFAULTS) -> bool:
    ga, gb = GreyImage(to_grey(a)), GreyImage(to_grey(b))
    ha, hb = compute_hashes(ga), compute_hashes(gb)
    match = find_duplicate(
        ha, ga, [KnownImage("b", hb, "b")], settings=settings, load_grey=lambda _: gb,
        candidate_appearance=appearance_signature(a), load_appearance=lambda _: appearance_signature(b),
    )
    return match is not None


def grade(im: Image.Image, gamma: tuple[float, float, float]) -> Image.Image:
    a = (np.asarray(im).astype(np.float32) / 255.0) ** np.array(gamma, np.float32)
    return Image.fromarray((a * 255).round().astype(np.uint8))


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coffee.png"])
def test_two_grades_of_one_photo_are_two_variations_not_duplicates(name):
    """Grey hashes and grey SSIM cannot tell a warm grade from a cool one (both ~identical);
    the colour signature can. A grade against black and white too."""
    original = rgb(name)
    warm, cool = grade(original, (0.85, 1.0, 1.2)), grade(original, (1.2, 1.0, 0.85))
    mono = original.convert("L").convert("RGB")
    assert not is_duplicate(warm, cool, RUN) and not is_duplicate(cool, warm, RUN)
    assert not is_duplicate(warm, mono, RUN)
    assert is_duplicate(warm, jpeg(warm, 40), RUN)  # a re-encoded copy of a grade is still a copy
    assert is_duplicate(warm, cool, COPY_FINDING)  # what the check adds


def test_appearance_signature_values():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    sig = appearance_signature(red)
    assert sig.shape == (16, 16, 3)
    assert tuple(sig[0, 0]) == pytest.approx((53.2, 80.1, 67.2), abs=0.5)  # CIELAB of sRGB red
    grey = appearance_signature(np.full((9, 9), 128, np.uint8))
    assert colour_distance(grey, grey * np.array([1, 0, 0], np.float32)) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError):
        DedupSettings(max_colour_distance=-1)


def test_an_object_removed_in_one_place_is_another_variation():
    """Two edits of one photo that differ in one place look alike at 20 px and in every hash;
    the local difference tells them apart, while even changes (re-encode, blur) stay copies."""
    original = np.asarray(rgb("astronaut.png"))
    a, b = original.copy(), original.copy()
    a[100:180, 300:380] = original[10:90, 420:500]  # the helmet's side covered with background
    b[330:410, 40:120] = original[10:90, 420:500]  # the flag's corner, likewise
    va, vb = Image.fromarray(a), Image.fromarray(b)
    assert not is_duplicate(va, vb, RUN)
    assert is_duplicate(va, jpeg(va, 40), RUN) and is_duplicate(va, va.filter(ImageFilter.GaussianBlur(1)), RUN)
    assert is_duplicate(va, vb, DedupSettings(max_local_difference=None))  # what the check adds


def test_another_framing_is_another_variation_in_a_run():
    """A slight recrop or a 2-degree tilt is a copy to varflow dedup, another framing (so another
    variation, if the profile finds it different enough) to a run."""
    im = rgb("chelsea.png")
    w, h = im.size
    recrop = im.crop((w // 25, h // 25, w, h)).resize((w, h), Image.Resampling.LANCZOS)
    tilt = im.rotate(2, resample=Image.Resampling.BICUBIC)
    for other in (recrop, tilt):
        assert is_duplicate(other, im, COPY_FINDING) and not is_duplicate(other, im, RUN)


@pytest.mark.parametrize("name", ["astronaut.png", "text.png", "hubble_deep_field.jpg"])
def test_every_edit_of_a_photo_is_a_duplicate(name):
    original = rgb(name)
    for edit, im in edits(original).items():
        assert is_duplicate(im, original), edit
        assert is_duplicate(original, im), edit


def test_two_edits_of_one_photo_are_duplicates_of_each_other():
    e = edits(rgb("coffee.png"))
    assert is_duplicate(e["crop4"], e["rot2"])
    assert is_duplicate(e["noise"], e["bright"])


def texture_tiles(name: str) -> list[Image.Image]:
    im = rgb(name)
    return [im.crop((x, y, x + 256, y + 256)) for x, y in [(0, 0), (256, 0), (0, 256), (256, 256)]]


@pytest.mark.parametrize("name", ["brick.png", "grass.png", "gravel.png"])
def test_tiles_of_one_texture_are_not_duplicates(name):
    tiles = texture_tiles(name)
    for i in range(len(tiles)):
        for j in range(i + 1, len(tiles)):
            assert not is_duplicate(tiles[i], tiles[j]), (i, j)


def test_different_faces_are_not_duplicates_even_blurred():
    """The hardest look-alikes of the evaluation set: aligned grey faces."""
    faces = np.load(skimage_photo("lfw_subset.npy"))

    def face(i: int) -> Image.Image:
        f = cv2.resize((faces[i] * 255).round().astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        return Image.fromarray(f).convert("RGB")

    a, b = face(0), face(90)
    assert min(hash_distances(compute_hashes(a),
                              compute_hashes(b))) <= DEFAULTS.max_hamming  # hashes alone would say yes
    assert not is_duplicate(edits(a)["blur"], edits(b)["blur"])
    assert is_duplicate(edits(a)["blur"], a)


def test_the_stereo_pair_is_two_photos():
    assert not is_duplicate(rgb("motorcycle_left.png"), rgb("motorcycle_right.png"))


def test_seed_style_full_size_ssim_misses_a_rotated_copy():
    """Why the SSIM is taken on thumbnails: at full size a 2-degree rotation scores far below 0.95."""
    original = rgb("astronaut.png")
    rotated = edits(original)["rot2"]
    seed_way = DedupSettings(max_hamming=16, ssim_threshold=0.95, ssim_size=0)
    ga, gb = GreyImage(to_grey(original)), GreyImage(to_grey(rotated))
    assert confirmation_ssim(ga, gb, seed_way) < 0.8
    assert not is_duplicate(rotated, original, seed_way)
    assert is_duplicate(rotated, original)


def test_find_duplicate_returns_the_nearest_confirmed_match_and_works_with_the_index(tmp_path):
    original = rgb("chelsea.png")
    e = edits(original)
    known = []
    greys = {}
    for key, im in [("other", rgb("coffee.png")), ("jpeg", e["jpeg40"]), ("rot", e["rot2"])]:
        path = tmp_path / f"{key}.png"
        im.save(path)
        greys[str(path)] = GreyImage(to_grey(im))
        known.append(KnownImage(key, compute_hashes(greys[str(path)]), str(path)))
    cand = GreyImage(to_grey(original))
    hashes = compute_hashes(cand)
    for pool in (known, KnownImageIndex(known)):
        match = find_duplicate(hashes, cand, pool, settings=DEFAULTS, load_grey=greys.__getitem__)
        assert match is not None and match.duplicate_of == "jpeg"  # nearest by hash distance
        assert match.ssim > DEFAULTS.ssim_threshold
        assert len(match.hamming) == 3
    stranger = GreyImage(to_grey(rgb("rocket.jpg")))
    assert find_duplicate(compute_hashes(stranger), stranger, KnownImageIndex(known),
                          settings=DEFAULTS, load_grey=greys.__getitem__) is None


def test_the_library_view_leaves_out_the_jobs_own_files_and_deleted_ones(tmp_path):
    original = rgb("chelsea.png")
    e = edits(original)
    greys, known = {}, []
    for key, name, im in [("own", "photo-1a2b3c4d-v01.png", e["jpeg40"]), ("gone", "gone.png", e["rot2"]),
                          ("other", "cat-v01.png", e["bright"])]:
        path = tmp_path / name
        im.save(path)
        greys[str(path)] = GreyImage(to_grey(im))
        known.append(KnownImage(key, compute_hashes(greys[str(path)]), str(path)))
    (tmp_path / "gone.png").unlink()
    cand = GreyImage(to_grey(original))
    hashes = compute_hashes(cand)
    library = KnownImageIndex(known)
    assert find_duplicate(hashes, cand, library, settings=DEFAULTS, load_grey=greys.__getitem__).duplicate_of == "own"
    view = LibraryView(library, skip_prefix=str(tmp_path / "photo-1a2b3c4d-v"))
    assert [k.key for k in view.candidates(hashes, DEFAULTS.max_hamming)] == ["other"]
    # the per-source list and the library together: the nearest confirmed of both, each key once
    match = find_duplicate(hashes, cand, known[:1], view, settings=DEFAULTS, load_grey=greys.__getitem__)
    assert match.duplicate_of == "own"
    assert find_duplicate(hashes, cand, [], view, settings=DEFAULTS,
                          load_grey=greys.__getitem__).duplicate_of == "other"
    # what a job accepts joins the shared index at once
    view.add([KnownImage("new", hashes, str(tmp_path / "cat-v01.png"))])
    assert "new" in {k.key for k in LibraryView(library).candidates(hashes, 0)}


def test_known_image_index_ignores_repeated_keys():
    h = compute_hashes(np.zeros((16, 16), np.uint8))
    index = KnownImageIndex([KnownImage("a", h, "a.png")])
    index.add([KnownImage("a", h, "a.png"), KnownImage("b", h, "b.png")])
    assert len(index) == 2
    assert [k.key for k in index.candidates(h, 0)] == ["a", "b"]


def test_dedup_settings_are_validated():
    with pytest.raises(ValueError, match="between 0 and 64"):
        DedupSettings(max_hamming=65)
    with pytest.raises(ValueError, match="within"):
        DedupSettings(ssim_threshold=1.5)
    with pytest.raises(ValueError, match="7x7"):
        DedupSettings(ssim_size=5)
    assert DedupSettings(ssim_size=0).ssim_size == 0
