"""Copy-finding through geometry (varflow/duplicates/copies.py) on real photos, and a run that skips an input copy."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import skimage_photo
from PIL import Image, ImageOps

from varflow.duplicates.copies import MIRROR, Route, copies_in_folder, find_copy_groups, find_copy_links, trim_borders
from varflow.images.imageio import load_rgb

SIDE = 256  # small photos keep the tests fast


def photo(name: str) -> Image.Image:
    im = load_rgb(skimage_photo(name))
    scale = SIDE / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)


def hard_copies(im: Image.Image) -> dict[str, Image.Image]:
    """The edits the older rule missed: a 60% crop off-centre, a mirror, a border, letterboxing, 15 degrees."""
    w, h = im.size
    cw, ch = round(w * 0.775), round(h * 0.775)  # 60% of the area
    letterbox = Image.new("RGB", (round(h * 16 / 9), h), (0, 0, 0))
    letterbox.paste(im, ((letterbox.width - w) // 2, 0))
    return {
        "crop60": im.crop((w - cw, 0, w, ch)),
        "mirror": ImageOps.mirror(im),
        "border": ImageOps.expand(im, round(0.1 * w), fill=(240, 235, 220)),
        "letterbox": letterbox,
        "rotate15": im.rotate(15, resample=Image.Resampling.BICUBIC, expand=True),
    }


@pytest.fixture(scope="module")
def copy_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("copies")
    for name in ("astronaut.png", "coffee.png"):
        im = photo(name)
        stem = Path(name).stem
        im.save(d / f"{stem}.png")
        for kind, c in hard_copies(im).items():
            c.save(d / f"{stem}-{kind}.png")
    # distinct photos, some alike: two photos of one scene, two tiles of one texture, two cats
    for name in ("chelsea.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png", "coins.png"):
        photo(name).save(d / f"{Path(name).stem}.png")
    brick = load_rgb(skimage_photo("brick.png"))
    brick.crop((0, 0, 256, 256)).save(d / "brick-a.png")
    brick.crop((256, 256, 512, 512)).save(d / "brick-b.png")
    return d


def test_every_hard_copy_is_found_and_distinct_photos_are_never_paired(copy_folder):
    paths = sorted(copy_folder.iterdir())
    groups = [[Path(p).name for p in g] for g in find_copy_groups(paths, workers=1)]
    for stem in ("astronaut", "coffee"):
        want = sorted([f"{stem}.png", *(f"{stem}-{k}.png" for k in ("crop60", "mirror", "border", "letterbox",
                                                                     "rotate15"))])
        assert want in groups, groups
    assert len(groups) == 2  # chelsea, rocket, the stereo pair, coins and the brick tiles stay alone


def test_each_copy_is_linked_to_its_original_directly(copy_folder):
    """Not only through the group: every hard edit is verified against the original itself
    (or the original's other copies) by one of the two routes, and says which."""
    paths = sorted(copy_folder.iterdir())
    names, links = find_copy_links(paths, workers=1)
    hows = {link.how for link in links}
    assert {Route.HASHES, Route.HASHES_MIRROR, Route.KEYPOINTS} <= hows
    for link in links:
        if link.how in (Route.KEYPOINTS, Route.KEYPOINTS_MIRROR):
            assert link.inliers >= 6 and link.ncc >= 0.9


def test_the_pool_finds_what_one_process_finds(copy_folder):
    paths = sorted(copy_folder.iterdir())
    assert find_copy_groups(paths, workers=2) == find_copy_groups(paths, workers=1)


def test_a_mirrored_photos_sift_descriptors_are_the_permuted_originals():
    grey = np.asarray(photo("astronaut.png").convert("L"))
    sift = cv2.SIFT_create(nfeatures=200)
    kp, d = sift.detectAndCompute(grey, None)
    km, dm = sift.detectAndCompute(np.ascontiguousarray(grey[:, ::-1]), None)
    pm = np.array([(grey.shape[1] - 1 - k.pt[0], k.pt[1]) for k in km])
    errors = []
    for k, desc in zip(kp, d):
        near = np.flatnonzero(((pm - np.array(k.pt)) ** 2).sum(axis=1) < 0.25)
        if near.size:
            errors.append(min(np.linalg.norm(desc[MIRROR] - dm[j]) for j in near) / np.linalg.norm(desc))
    assert len(errors) > 15 and np.median(errors) < 0.1  # an unpermuted descriptor is ~0.8 away


def test_trim_borders_finds_the_content_frame():
    content = (np.random.default_rng(0).integers(0, 255, (40, 60))).astype(np.uint8)
    framed = np.full((70, 100), 12, np.uint8)
    framed[10:50, 25:85] = content
    assert np.array_equal(trim_borders(framed), content)
    assert trim_borders(np.full((30, 30), 7, np.uint8)).shape == (30, 30)  # all border: left as is


def test_copies_in_folder_names_the_first_of_each_group(copy_folder):
    paths = sorted(copy_folder.iterdir())
    copies = copies_in_folder(paths)
    assert copies[copy_folder / "astronaut-mirror.png"] == copy_folder / "astronaut-border.png"  # first by name
    assert copies[copy_folder / "astronaut.png"] == copy_folder / "astronaut-border.png"
    assert copy_folder / "astronaut-border.png" not in copies
    assert not {copy_folder / "chelsea.png", copy_folder / "motorcycle_right.png"} & set(copies)


def test_a_run_skips_an_input_copy_and_keep_copies_processes_both(prefect_server, tmp_path):
    from varflow.flows.parameters import RunParameters
    from varflow.flows.variation_flow import run_local
    from varflow.storage import Store

    photos = tmp_path / "photos"
    photos.mkdir()
    im = photo("astronaut.png").resize((128, 128), Image.Resampling.LANCZOS)
    im.save(photos / "a-astronaut.png")
    ImageOps.mirror(im).save(photos / "b-astronaut-mirrored.png")
    photo("coffee.png").resize((128, 85), Image.Resampling.LANCZOS).save(photos / "c-coffee.png")

    def run(home: str, **kw):
        params = RunParameters(input_dir=str(photos), output_dir=str(tmp_path / home / "out"),
                               home=str(tmp_path / home), count=1, level="low", adaptive=False, seed=1, **kw)
        summary = run_local(params)
        rows = Store(tmp_path / home).query("SELECT path, status, error FROM images")
        return summary, {Path(r["path"]).name: r for r in rows}

    summary, rows = run("skip")
    assert {n: r["status"] for n, r in rows.items()} == {
        "a-astronaut.png": "ok", "b-astronaut-mirrored.png": "skipped", "c-coffee.png": "ok"}
    assert rows["b-astronaut-mirrored.png"]["error"].startswith(f"copy of {photos / 'a-astronaut.png'}")
    assert not (tmp_path / "skip" / "out" / "b-astronaut-mirrored").exists()

    summary, rows = run("both", keep_copies=True)
    assert {r["status"] for r in rows.values()} == {"ok"} and len(rows) == 3


def test_the_rule_for_variations_is_unchanged_a_crop_or_mirror_is_another_variation():
    """A run's dedup of variations (varflow.duplicates.dedup with DedupSettings()) still calls a crop or a
    mirror of a picture another variation, though varflow.duplicates.copies calls it a copy."""
    from varflow.duplicates.dedup import KnownImage, appearance_signature, find_duplicate
    from varflow.duplicates.hashing import compute_hashes
    from varflow.quality.metrics import GreyImage, to_grey
    from varflow.settings import DedupSettings

    im = photo("astronaut.png")
    grey = GreyImage(to_grey(im))
    known = [KnownImage("orig", compute_hashes(grey), "unused")]
    for kind in ("crop60", "mirror", "rotate15"):
        other = hard_copies(im)[kind]
        g = GreyImage(to_grey(other))
        match = find_duplicate(compute_hashes(g), g, known, settings=DedupSettings(), load_grey=lambda _: grey,
                               candidate_appearance=appearance_signature(other),
                               load_appearance=lambda _: appearance_signature(im))
        assert match is None, kind


def test_varflow_dedup_never_opens_a_fifo_and_says_why_it_left_it_out(tmp_path):
    """discover_images lists FIFOs so that a run records them; dedup must not read one (it hung)."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    im = photo("coffee.png").resize((128, 85))
    im.save(folder / "coffee.png")
    ImageOps.mirror(im).save(folder / "coffee-mirrored.png")
    os.mkfifo(folder / "pipe.png")
    out = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "dedup", str(folder), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[str(folder / "coffee-mirrored.png"), str(folder / "coffee.png")]]
    assert "pipe.png" in out.stderr and "FIFO" in out.stderr
