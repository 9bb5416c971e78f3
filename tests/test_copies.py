"""Copy-finding through geometry (varflow/duplicates/copies.py) on real photos, and a run that skips an input copy."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import skimage_photo
from PIL import Image, ImageOps

from varflow.duplicates.copies import (
    KEYPOINTS,
    MIRROR,
    RATIO,
    SIFT_CONTRAST,
    VOCAB_PARTS,
    Route,
    Vocabulary,
    _nearest_rows,
    copies_in_folder,
    find_copy_groups,
    find_copy_links,
    keypoints,
    ratio_matches,
    ratio_matches_many,
    trim_borders,
)
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
    """As copies.keypoints describes them: each on the image itself at its own scale."""
    grey = np.asarray(photo("astronaut.png").convert("L"))
    kp, d = keypoints(grey)
    km, dm = keypoints(np.ascontiguousarray(grey[:, ::-1]))
    pm = np.array([(grey.shape[1] - 1 - k.pt[0], k.pt[1]) for k in km])
    errors = []
    for k, desc in zip(kp, d):
        near = np.flatnonzero(((pm - np.array(k.pt)) ** 2).sum(axis=1) < 0.25)
        if near.size:
            errors.append(min(np.linalg.norm(desc[MIRROR] - dm[j]) for j in near) / np.linalg.norm(desc))
    assert len(errors) > 15 and np.median(errors) < 0.1  # an unpermuted descriptor is ~0.8 away


def test_keypoints_are_sifts_own_at_most_keypoints_and_none_on_a_blank():
    grey = np.asarray(photo("astronaut.png").convert("L"))
    sift = cv2.SIFT_create(nfeatures=KEYPOINTS, contrastThreshold=SIFT_CONTRAST)
    kp, d = keypoints(grey)
    assert len(kp) == len(sift.detect(grey, None)) == KEYPOINTS and d.shape == (KEYPOINTS, 128)
    assert sorted(k.pt for k in kp) == sorted(k.pt for k in sift.detect(grey, None))
    assert keypoints(np.full((90, 120), 128, np.uint8)) == ([], None)
    noise = np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)  # the finest scales only
    assert keypoints(noise)[1].shape[1] == 128


def test_copy_search_holds_opencv_to_one_thread_and_gives_the_setting_back(tmp_path, monkeypatch):
    """OpenCV's own pool beside our two workers cost a quarter more time; the setting is the
    process's, so it is restored after, as it was, even after a failure."""
    import varflow.duplicates.copies as copies

    for i, name in enumerate(("astronaut.png", "coffee.png")):
        photo(name).save(tmp_path / f"{i}.png")
    seen = []
    real = copies.features_of_grey

    def spy(grey):
        seen.append(cv2.getNumThreads())
        return real(grey)

    monkeypatch.setattr(copies, "features_of_grey", spy)
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        find_copy_groups(sorted(tmp_path.iterdir()), workers=2)
        assert seen == [1, 1] and cv2.getNumThreads() == 3
        monkeypatch.setattr(copies, "link_features", lambda *a: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            find_copy_groups(sorted(tmp_path.iterdir()), workers=2)
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_ratio_matches_are_opencvs_brute_force_ratio_test():
    """The matrix-product matcher keeps exactly the pairs OpenCV's BFMatcher + Lowe's test keep."""
    im = photo("astronaut.png")
    sift = cv2.SIFT_create(nfeatures=160)
    _, da = sift.detectAndCompute(np.asarray(im.convert("L")), None)
    _, db = sift.detectAndCompute(np.asarray(im.rotate(10, resample=Image.Resampling.BICUBIC).convert("L")), None)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(db, da, k=2)
    want = {(m[0].queryIdx, m[0].trainIdx) for m in knn if m[0].distance < RATIO * m[1].distance}
    q, t = ratio_matches(db, da)
    assert len(want) > 30 and set(zip(q.tolist(), t.tolist(), strict=True)) == want
    assert [len(x) for x in ratio_matches(db, da[:1])] == [0, 0]  # one descriptor: no second to compare with


def test_ratio_matches_many_is_each_pairs_own_ratio_test_whatever_the_batch_holds():
    """Padding to the batch's longest never adds or moves a match (a padded train column is nobody's
    nearest, a padded query row is nobody's match), and a train of one descriptor matches nothing."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, 120, (90, 128)).astype(np.uint8)
    pairs = []
    for nq, nt in ((90, 90), (30, 75), (90, 12), (7, 90), (0, 40), (40, 1), (55, 2)):
        q = np.clip(base[:nq].astype(int) + rng.integers(-6, 7, (nq, 128)), 0, 255).astype(np.uint8)
        t = np.concatenate([base[:nt // 2], rng.integers(0, 120, (nt - nt // 2, 128)).astype(np.uint8)])
        pairs.append((q, t))
    # one padded column beside 89 far descriptors: faint queries would all take it for their nearest
    pairs.append((rng.integers(0, 3, (20, 128)).astype(np.uint8), rng.integers(60, 200, (89, 128)).astype(np.uint8)))
    # three queries beside a train holding a zero row: the batch's padded query rows would match it
    far = rng.integers(150, 250, (30, 128)).astype(np.uint8)
    zero_first = np.concatenate([np.zeros((1, 128), np.uint8), far])
    pairs.append((rng.integers(100, 250, (3, 128)).astype(np.uint8), zero_first))
    got = ratio_matches_many(pairs)
    for (q, t), (gq, gt) in zip(pairs, got, strict=True):
        knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(q, t, k=2) if len(q) and len(t) >= 2 else []
        want = {(m[0].queryIdx, m[0].trainIdx) for m in knn if m[0].distance < RATIO * m[1].distance}
        assert set(zip(gq.tolist(), gt.tolist(), strict=True)) == want
    assert len(got[0][0]) > 40 and len(got[2][0]) > 0 and [len(x) for x in got[5]] == [0, 0]
    assert ratio_matches_many([]) == []


def test_vocabulary_words_are_the_nearest_centre_of_each_slice():
    rng = np.random.default_rng(2)
    sample = rng.integers(0, 100, (3000, 128)).astype(np.float32)
    width = 128 // VOCAB_PARTS
    for p in range(VOCAB_PARTS):
        sample[:, p * width:(p + 1) * width] += 40 * p  # each slice where it lies, so a centre says which it learnt
    vocab = Vocabulary(sample, centres=6)
    assert vocab.k == 6 and vocab.size == 6 ** VOCAB_PARTS
    covered = np.concatenate([np.arange(128)[part] for part in vocab.parts])
    assert sorted(covered.tolist()) == list(range(128))  # the slices tile the descriptor
    for p, centres in enumerate(vocab.centres):
        assert abs(float(centres.mean()) - (49.5 + 40 * p)) < 5
    x = rng.integers(0, 200, (50, 128)).astype(np.float32)
    want = np.zeros(50, np.int64)
    for part, centres in zip(vocab.parts, vocab.centres, strict=True):
        d = np.linalg.norm(x[:, part][:, None, :] - centres[None, :, :], axis=2)
        want = want * 6 + d.argmin(axis=1)
    assert np.array_equal(vocab.words(x), want) and len(set(want.tolist())) > 10
    assert Vocabulary(sample[:10], centres=6).k == 2  # too few descriptors for 6 centres a slice


def test_nearest_rows_is_a_full_sort_cut_short():
    from scipy import sparse

    rng = np.random.default_rng(3)
    x = sparse.random(300, 50, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    full = (x @ x.T).toarray()
    rows = _nearest_rows(x, x.T.tocsc(), 256, want=3)
    assert [r for r, _, _ in rows] == list(range(256, 300))
    for r, cols, scores in rows:
        full[r, r] = -1
        assert len(cols) == 12 and r not in cols
        assert np.allclose(scores, np.sort(full[r])[::-1][:12]) and np.allclose(full[r, cols], scores)


def test_a_hash_match_needs_the_keypoints_to_agree_where_both_have_them():
    """A letterboxed copy's keypoints fit a transform (its overlap correlates below 0.9: the
    hashes, not the overlap, judged its look); two different photos' keypoints do not."""
    from varflow.duplicates.copies import _keypoints_agree, _Spill, features_of_grey

    im = photo("astronaut.png")
    ims = [im, hard_copies(im)["letterbox"], photo("chelsea.png")]
    feats, spill = [features_of_grey(np.asarray(x.convert("L"))) for x in ims], _Spill()
    try:
        for i, f in enumerate(feats):
            spill.put(i, f.descriptors)
        assert _keypoints_agree(feats, spill, 1, 0, False)
        assert not _keypoints_agree(feats, spill, 2, 0, False) and not _keypoints_agree(feats, spill, 2, 0, True)
        assert _keypoints_agree(feats, None, 2, 0, False)  # no descriptors to judge by: the hashes decide
    finally:
        spill.close()


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


def test_a_photo_already_paid_for_stands_for_a_new_copy_of_it(prefect_server, tmp_path):
    """photo.png finished last night; today its mirror IMG_0001.png arrives (first by name): the new
    file is the copy, and nothing is paid for twice."""
    from varflow.flows.parameters import RunParameters
    from varflow.flows.variation_flow import run_local
    from varflow.storage import Store

    photos = tmp_path / "photos"
    photos.mkdir()
    im = photo("astronaut.png").resize((128, 128), Image.Resampling.LANCZOS)
    im.save(photos / "photo.png")
    params = RunParameters(input_dir=str(photos), output_dir=str(tmp_path / "out"), home=str(tmp_path / "home"),
                           count=1, level="low", adaptive=False, seed=1)
    run_local(params)
    ImageOps.mirror(im).save(photos / "IMG_0001.png")
    run_local(params)
    rows = Store(tmp_path / "home").query("SELECT path, status, error FROM images")
    assert sorted((Path(r["path"]).name, r["status"]) for r in rows) == [
        ("IMG_0001.png", "skipped"), ("photo.png", "ok"), ("photo.png", "skipped")]  # paid for once
    why = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "skipped"}
    assert why["IMG_0001.png"].startswith(f"copy of {photos / 'photo.png'}")
    assert why["photo.png"].startswith("unchanged since run")


def test_copies_in_folder_lets_a_done_input_stand_for_its_group(copy_folder):
    paths = sorted(copy_folder.iterdir())
    done = {copy_folder / "astronaut-rotate15.png"}
    copies = copies_in_folder(paths, done=done)
    assert copies[copy_folder / "astronaut-border.png"] == copy_folder / "astronaut-rotate15.png"
    assert copy_folder / "astronaut-rotate15.png" not in copies
    assert copies[copy_folder / "coffee.png"] == copy_folder / "coffee-border.png"  # no done one: the first


@pytest.mark.parametrize("kind", ["crop70", "rotate10"])
def test_a_folder_of_two_finds_a_crop_or_a_rotation(tmp_path, kind):
    """With two images, every word they share has idf log(3/3) = 0: a small folder verifies every pair."""
    im = photo("coffee.png")
    w, h = im.size
    edited = im.crop((0, 0, round(w * 0.837), round(h * 0.837))) if kind == "crop70" else \
        im.rotate(10, resample=Image.Resampling.BICUBIC, expand=True)
    im.save(tmp_path / "a.png")
    edited.save(tmp_path / "b.png")
    assert find_copy_groups(sorted(tmp_path.iterdir())) == [[str(tmp_path / "a.png"), str(tmp_path / "b.png")]]


def test_a_folder_of_two_different_photos_has_no_group(tmp_path):
    for name in ("motorcycle_left.png", "motorcycle_right.png"):
        photo(name).save(tmp_path / name)
    assert find_copy_groups(sorted(tmp_path.iterdir())) == []


def test_find_duplicates_works_from_an_unguarded_script(tmp_path):
    """No ``if __name__ == '__main__'``: a spawn pool re-imported the script and broke (BrokenProcessPool)."""
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    im = photo("coffee.png").resize((96, 64))
    im.save(folder / "coffee.png")
    ImageOps.mirror(im).save(folder / "coffee-mirrored.png")
    for i, name in enumerate(("chelsea.png", "rocket.jpg", "coins.png", "camera.png", "moon.png", "page.png",
                              "horse.png", "hubble_deep_field.jpg", "ihc.png")):
        photo(name).resize((96, 64)).save(folder / f"other-{i}.png")
    script = tmp_path / "script.py"
    script.write_text(f"import json\nimport varflow\n"
                      f"print(json.dumps([[str(p) for p in g] for g in varflow.find_duplicates({str(folder)!r})]))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[str(folder / "coffee-mirrored.png"),
                                                                 str(folder / "coffee.png")]]


def test_a_run_over_a_folder_with_nothing_new_decodes_nothing_for_the_copy_check(tmp_path, monkeypatch):
    from varflow.duplicates import copies
    from varflow.processing.scan import input_copies, scan_images
    from varflow.settings import LoadLimits

    im = photo("coffee.png").resize((96, 64))
    im.save(tmp_path / "a.png")
    ImageOps.mirror(im).save(tmp_path / "b.png")
    paths = sorted(tmp_path.iterdir())
    fingerprint = {"count": 1}
    finished = {f.job_key: "run-1" for f in scan_images(paths, tmp_path, fingerprint=fingerprint, finished={})}
    decoded = []
    real = copies.features_of_file
    monkeypatch.setattr(copies, "features_of_file", lambda path, limits: decoded.append(path) or real(path, limits))
    kw = dict(follow_links=False, limits=LoadLimits(), fingerprint=fingerprint)
    assert input_copies(paths, tmp_path, finished=finished, **kw) == {} and decoded == []
    assert input_copies(paths, tmp_path, finished={next(iter(finished)): "run-1"}, **kw) == {
        tmp_path / "b.png": tmp_path / "a.png"} and len(decoded) == 2


def test_the_copy_check_decodes_only_images_it_has_not_seen(tmp_path, monkeypatch):
    """Features are cached by content under the data directory: a second look decodes only the new file."""
    from varflow.duplicates import copies
    from varflow.processing.scan import input_copies
    from varflow.settings import LoadLimits

    folder = tmp_path / "in"
    folder.mkdir()
    im = photo("coffee.png").resize((96, 64))
    im.save(folder / "b.png")
    photo("chelsea.png").resize((96, 64)).save(folder / "c.png")
    decoded = []
    real = copies.features_of_file
    monkeypatch.setattr(copies, "features_of_file", lambda path, limits: decoded.append(path) or real(path, limits))
    kw = dict(follow_links=False, limits=LoadLimits(), fingerprint={"count": 1}, cache_dir=tmp_path / "cache")
    assert input_copies(sorted(folder.iterdir()), folder, finished={}, **kw) == {} and len(decoded) == 2
    ImageOps.mirror(im).save(folder / "a.png")
    decoded.clear()
    assert input_copies(sorted(folder.iterdir()), folder, finished={}, **kw) == {folder / "b.png": folder / "a.png"}
    assert decoded == [str(folder / "a.png")]
