"""The offline local generator: each variation type does what its name says, deterministically,
steered by the prompt, on small real photos and a synthetic scene with a known object."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import load_photo
from PIL import Image

from varflow.duplicates.dedup import KnownImage, dedup_file
from varflow.generation.backends import derive_seed, make_backend
from varflow.generation.backends.base import CONCRETE_TYPES, GenerationError, GeneratorBackend, VariationRequest
from varflow.generation.backends.local import LocalGenerator, composition, looks, parse_prompt
from varflow.settings import DedupSettings

OBJECT_CENTRE, OBJECT_RADIUS = (51, 53), 11  # the blue disc of the synthetic scene
BLUE = np.array([40, 70, 200])


def _scene() -> np.ndarray:
    """320 x 240: a textured warm backdrop, a large red-and-yellow disc (the subject) and a small
    blue disc on the backdrop (a distinct object, away from the subject)."""
    rng = np.random.default_rng(0)
    H, W = 240, 320
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    base = np.stack([150 + 30 * xx / W, 135 + 20 * yy / H, 110 + 0 * xx], -1)
    noise = cv2.GaussianBlur(rng.normal(0, 12, (H, W, 3)).astype(np.float32), (0, 0), 1.2)
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    cv2.circle(img, (160, 132), 67, (200, 60, 30), -1)
    cv2.circle(img, (160, 132), 29, (240, 200, 60), -1)
    cv2.circle(img, OBJECT_CENTRE, OBJECT_RADIUS, tuple(int(v) for v in BLUE), -1)
    return img


def _request(src, out, *, vtype="style_change", prompt="", seed=1):
    return VariationRequest(image_id="img", source_path=str(src), variation_type=vtype, prompt=prompt,
                            seed=seed, attempt=0, output_path=str(out))


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im).astype(np.int16)


def _ops(res) -> list[dict]:
    ops = json.loads(res.detail)
    assert isinstance(ops, list) and all("op" in o for o in ops)
    return ops


@pytest.fixture(scope="module")
def gen() -> LocalGenerator:
    return LocalGenerator()


@pytest.fixture(scope="module")
def plain() -> LocalGenerator:
    """No finishing grade: an edit's untouched pixels stay exactly the source's."""
    return LocalGenerator(finishing_grade=False)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "scene.png"
    Image.fromarray(_scene()).save(path)
    return path


@pytest.fixture(scope="module")
def coffee(tmp_path_factory):
    """coffee.png at 300 x 200 (not square) as the pipeline hands it over: an RGB PNG."""
    path = tmp_path_factory.mktemp("src") / "coffee.png"
    Image.fromarray(load_photo("coffee.png")).resize((300, 200), Image.LANCZOS).save(path)
    return path


def _first_seed(g, src, tmp_path, vtype, want, prompt=""):
    """The first seed whose operations are exactly ``want`` (names, in order)."""
    for seed in range(60):
        res = g.generate(_request(src, tmp_path / f"{vtype}-{seed}.png", vtype=vtype, seed=seed, prompt=prompt))
        if [o["op"] for o in _ops(res)] == want:
            return res
    raise AssertionError(f"no seed in 0..59 gave {want} for {vtype}")


# ----------------------------------------------------------------------------------------------
# the backend contract


def test_backend_protocol_and_factory():
    g = make_backend("local", output_format="png")
    assert isinstance(g, LocalGenerator) and isinstance(g, GeneratorBackend)
    assert (g.name, g.model) == ("local", "local-v1")
    assert make_backend("local", model="local-v1").model == "local-v1"
    with pytest.raises(ValueError, match="output_format"):
        LocalGenerator(output_format="gif")
    with pytest.raises(ValueError, match="one model"):
        make_backend("local", model="gemini-2.5-flash-image")


def test_same_request_same_bytes_other_seed_other_variation(gen, coffee, scene, tmp_path):
    for vtype in CONCRETE_TYPES:
        src = scene if vtype.startswith("object") else coffee
        a = gen.generate(_request(src, tmp_path / f"a-{vtype}.png", vtype=vtype, seed=11))
        b = gen.generate(_request(src, tmp_path / f"b-{vtype}.png", vtype=vtype, seed=11))
        assert Path(a.output_path).read_bytes() == Path(b.output_path).read_bytes(), vtype
        assert (a.prompt_sent, a.detail) == (b.prompt_sent, b.detail)
    # several seeds of one type: every pair differs visibly
    outs = [_rgb(gen.generate(_request(coffee, tmp_path / f"s{s}.png", vtype="style_change", seed=s)).output_path)
            for s in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(outs[i] - outs[j]).mean() > 4, (i, j)


@pytest.mark.parametrize("vtype", CONCRETE_TYPES)
def test_every_type_writes_an_rgb_png_of_the_source_size(gen, scene, tmp_path, vtype):
    out = tmp_path / "deep" / "er" / f"{vtype}.png"  # parent directories are created
    res = gen.generate(_request(scene, out, vtype=vtype, seed=3))
    assert res.output_path == str(out) and res.model == "local-v1"
    assert (res.width, res.height) == (320, 240)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (320, 240)
    assert np.abs(_rgb(out) - _scene()).mean() > 0.05  # something was done
    assert len(_ops(res)) >= 1
    assert res.prompt_sent.endswith(".") and len(res.prompt_sent) > 15
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left behind


# ----------------------------------------------------------------------------------------------
# each type does what its name says


def test_mirror_is_the_flipped_source(plain, coffee, tmp_path):
    res = _first_seed(plain, coffee, tmp_path, "composition", ["mirror"])
    src = _rgb(coffee)
    assert np.array_equal(_rgb(res.output_path), src[:, ::-1])
    assert "mirrored" in res.prompt_sent.lower()


def test_recrop_keeps_the_subject(plain, scene, tmp_path):
    res = _first_seed(plain, scene, tmp_path, "composition", ["recrop"])
    (op,) = _ops(res)
    x, y, w, h = op["box"]
    assert 0.75 * 320 - 1 <= w <= 0.9 * 320 + 1 and abs(w / h - 320 / 240) < 0.02
    # the subject (the red disc: centre (160, 132), radius 67) lies inside the crop
    assert x <= 160 - 67 and x + w >= 160 + 67 and y <= 132 - 67 and y + h >= 132 + 67
    out = _rgb(res.output_path)
    red = lambda a: ((a[..., 0] > 170) & (a[..., 1] < 90) & (a[..., 2] < 60)).sum()
    assert red(out) > red(_scene()) * 1.15  # the subject fills more of the frame


def test_perspective_samples_only_inside_the_picture():
    img = load_photo("astronaut.png")[::2, ::2]
    H, W = img.shape[:2]
    for seed in range(6):
        out, op = composition.perspective(img, np.random.default_rng(seed), (W / 2, H / 2))
        corners = np.array(op.params["corners"])
        assert (corners >= -0.5).all() and (corners[:, 0] <= W - 0.5).all() and (corners[:, 1] <= H - 0.5).all()
        assert 0.85 <= op.params["kept_scale"] <= 1.0
        assert out.shape == img.shape


def test_object_remove_changes_only_the_object(plain, scene, tmp_path):
    res = plain.generate(_request(scene, tmp_path / "rm.png", vtype="object_remove", seed=1))
    (op,) = _ops(res)
    assert op["op"] == "remove_object"
    out, src = _rgb(res.output_path), _scene().astype(np.int16)
    changed = np.abs(out - src).max(-1) > 0
    ys, xs = np.nonzero(changed)
    cx, cy = OBJECT_CENTRE
    # every changed pixel lies near the object, and the blue disc is gone
    assert xs.min() >= cx - 3 * OBJECT_RADIUS and xs.max() <= cx + 3 * OBJECT_RADIUS
    assert ys.min() >= cy - 3 * OBJECT_RADIUS and ys.max() <= cy + 3 * OBJECT_RADIUS
    disc = np.hypot(*np.mgrid[:240, :320][::-1] - np.array([cx, cy])[:, None, None]) <= OBJECT_RADIUS - 1
    assert np.abs(out[disc] - BLUE).sum(-1).min() > 60
    # the fill looks like the backdrop around it
    ring = (np.hypot(*np.mgrid[:240, :320][::-1] - np.array([cx, cy])[:, None, None]) - 22) ** 2 < 9
    assert np.abs(out[disc].mean(0) - src[ring].mean(0)).max() < 15
    assert "removed" in res.prompt_sent.lower()


def _blue_pixels(a) -> int:
    return int((np.abs(a - BLUE).sum(-1) < 60).sum())


def test_fill_of_the_astronauts_visor_is_as_calm_as_the_visor():
    """Removing the haze reflection from the astronaut's black visor: the fill is as calm as the
    dark visor around it (measured 5% of its pixels above 12 grey levels, 6% around it). With
    the 12-unit colour margin around a calm surround, the visor's dark red reflections and the
    dust lit by the haze were sources too: 20% of the fill was such mottle, visible at 2x."""
    from varflow.generation.backends.local import objects
    from varflow.generation.backends.local.saliency import saliency, subject

    img = load_photo("astronaut.png")
    sal = saliency(img)
    region = sorted(objects.find_objects(img, sal, subject(sal)), key=lambda r: -r.score)[0]
    hole = objects.hole_mask(img, region) > 0
    around = (cv2.dilate(hole.astype(np.uint8), np.ones((31, 31), np.uint8)) > 0) & ~hole
    dark = around & (img.max(axis=2) < 60)  # the visor around the hole (not its bright rim)
    lit_around = float((img[dark].max(axis=1) > 12).mean())
    for seed in (0, 1):
        out, _ = objects.remove(img, region, np.random.default_rng(seed))
        lit = float((out[hole].max(axis=1) > 12).mean())
        assert lit < 1.5 * lit_around, (seed, lit, lit_around)


def test_object_add_clones_the_object_elsewhere(plain, scene, tmp_path):
    res = plain.generate(_request(scene, tmp_path / "add.png", vtype="object_add", seed=2))
    ops = _ops(res)
    assert {o["op"] for o in ops} == {"add_object"}
    out = _rgb(res.output_path)
    disc_px = _blue_pixels(_scene().astype(np.int16))
    assert _blue_pixels(out) >= disc_px * (1 + 0.5 * len(ops))  # a copy per add
    cx, cy = OBJECT_CENTRE
    assert np.abs(out[cy, cx] - BLUE).sum() < 40  # the original stays
    for o in ops:
        x, y, w, h = o["to"]
        assert not (x <= cx <= x + w and y <= cy <= y + h)  # somewhere else


def test_a_copy_never_covers_what_lies_on_the_surface(gen, tmp_path):
    """The astronaut's visor: around the window's white reflection the visor is black, so the
    ring alone matched and the demo accepted a copy of the haze laid over the window (a bright
    sliver at its edge). A spot must be clear inside too; the visor has none, so adding and
    moving are not offered for this photo (they were attempts without an image)."""
    from varflow.generation.backends.local import objects
    from varflow.generation.backends.local.saliency import saliency, subject

    img = load_photo("astronaut.png")
    sal = saliency(img)
    region = objects.find_objects(img, sal, subject(sal))[0]
    for seed in range(4):
        with pytest.raises(objects.NoObject):
            objects.add(img, region, sal, np.random.default_rng(seed))
    path = tmp_path / "astronaut.png"
    Image.fromarray(img).save(path)
    types = gen.variation_types_for(str(path))
    assert "object_remove" in types and "object_add" not in types and "object_rearrange" not in types


def test_object_rearrange_moves_the_object(plain, scene, tmp_path):
    res = plain.generate(_request(scene, tmp_path / "mv.png", vtype="object_rearrange", seed=3))
    (op,) = _ops(res)
    assert op["op"] == "move_object"
    out = _rgb(res.output_path)
    cx, cy = OBJECT_CENTRE
    assert np.abs(out[cy, cx] - BLUE).sum() > 100  # gone from its place
    x, y, w, h = op["to"]
    assert _blue_pixels(out[y:y + h, x:x + w]) > 0.6 * _blue_pixels(_scene().astype(np.int16))


def test_no_object_to_edit_is_a_clear_error(plain, tmp_path):
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(flat)
    for vtype in ("object_remove", "object_add", "object_rearrange"):
        with pytest.raises(GenerationError) as info:
            plain.generate(_request(flat, tmp_path / "o.png", vtype=vtype))
        assert info.value.outcome == "no_object" and not info.value.retryable
        assert str(flat) in str(info.value) and vtype in str(info.value)


def test_a_grade_keeps_the_geometry(gen, coffee, tmp_path):
    # a take of a named look relights it (light from one side) and grades it: no geometry moves
    res = _first_seed(gen, coffee, tmp_path, "style_change", ["relight", "grade_warm"], prompt="warm")
    src, out = _rgb(coffee), _rgb(res.output_path)

    def edges(a):
        g = cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)).ravel()

    assert np.corrcoef(edges(src), edges(out))[0, 1] > 0.97
    assert np.abs(out - src).mean() > 3


# ----------------------------------------------------------------------------------------------
# the prompt steers


def test_prompt_vocabulary():
    assert parse_prompt("Golden hour, warm and VIVID") == (["golden_hour", "warm", "vivid"], [])
    assert parse_prompt("watercolour sketch") == ([], ["watercolor", "sketch"])
    assert parse_prompt("b&w noir comic") == (["mono"], ["cartoon"])
    assert parse_prompt("cinematic tilt-shift") == (["teal_orange"], ["tilt_shift"])
    assert parse_prompt("a waterfall at noon") == ([], [])  # no "fall" inside a word


def test_black_and_white_prompt_gives_grey_output(gen, coffee, tmp_path):
    neutral = LocalGenerator(toned_monochrome=False)
    for vtype, seed in (("style_change", 1), ("composition", 2), ("object_remove", 3)):
        for g, max_dev in ((gen, 6), (neutral, 0)):
            res = g.generate(_request(coffee, tmp_path / f"bw-{vtype}.png", vtype=vtype, seed=seed,
                                      prompt="a black and white version"))
            var = _rgb(res.output_path)
            dev = np.abs(var - var.mean(axis=2, keepdims=True))
            assert dev.max() <= max_dev, (vtype, dev.max())
            assert "black-and-white" in res.prompt_sent


def test_warm_and_cool_prompts_move_red_against_blue(gen, coffee, tmp_path):
    src = _rgb(coffee).astype(float)
    ratio = lambda a: float(a[..., 0].mean() / a[..., 2].mean())
    for vtype in ("style_change", "composition"):
        for seed in (4, 5):
            warm = _rgb(gen.generate(_request(coffee, tmp_path / "w.png", vtype=vtype, seed=seed,
                                              prompt="warm")).output_path)
            cool = _rgb(gen.generate(_request(coffee, tmp_path / "c.png", vtype=vtype, seed=seed,
                                              prompt="cool")).output_path)
            assert ratio(warm) > ratio(src) * 1.05 > ratio(cool) * 1.1, (vtype, seed)


def test_style_words_pick_the_rendering(gen, coffee, tmp_path):
    for prompt, style in (("cartoon", "cartoon"), ("pencil sketch", "sketch"), ("watercolor", "watercolor"),
                          ("oil painting", "painting"), ("pop art", "poster"), ("hdr", "hdr"),
                          ("dreamy glow", "glow"), ("tilt-shift", "tilt_shift")):
        res = gen.generate(_request(coffee, tmp_path / f"{style}.png", seed=7, prompt=prompt))
        assert [o["op"] for o in _ops(res) if o["op"].startswith("render_")] == [f"render_{style}"], prompt


@pytest.mark.parametrize("prompt", ["golden hour", "sepia", "cartoon"])
def test_takes_of_one_prompt_are_pairwise_not_duplicates(gen, tmp_path, prompt):
    """A run's first N attempts of a named look are N variations: no two are duplicates by the
    run's own rule (varflow.duplicates.dedup with the run's settings), on a real photo, seeded as a run is."""
    src = tmp_path / "chelsea.png"
    Image.fromarray(load_photo("chelsea.png")).resize((300, 200), Image.LANCZOS).save(src)
    n = 4
    paths = []
    for a in range(n):
        req = VariationRequest(image_id="chelsea", source_path=str(src), variation_type="style_change",
                               prompt=prompt, seed=derive_seed(7, "chelsea", a), attempt=a,
                               output_path=str(tmp_path / f"take-{a}.png"))
        paths.append(gen.generate(req).output_path)
    hashes = [dedup_file(p, [], DedupSettings()).hashes for p in paths]
    for i in range(n):
        others = [KnownImage(f"take-{j}", hashes[j], paths[j]) for j in range(n) if j != i]
        match = dedup_file(paths[i], others, DedupSettings()).duplicate
        assert match is None, (prompt, i, match)


def test_every_grade_and_rendering_keeps_size_and_range():
    img = load_photo("chelsea.png")[::2, ::2]
    for name, f in {**looks.GRADES, **looks.RENDERINGS}.items():
        out, params = f(img, 1.0, np.random.default_rng(0))
        assert out.shape == img.shape and out.dtype == np.uint8, name
        assert isinstance(params, dict)
        # nothing blown out: no more clipped pixels than the source has, plus a little
        clipped = lambda a: float(((a.max(-1) >= 254) | (a.min(-1) <= 1)).mean())
        assert clipped(out) <= clipped(img) + 0.03, name
    # a take's light at its strongest (the late golden-hour sun), from each side of its arc
    for deg in (-180, -90, 0):
        out, _ = looks.relight(img, angle=np.radians(deg), falloff=0.35, glow=0.6,
                               tint=looks.LIGHT_TINTS["golden_hour"], reach=1.3)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert clipped(out) <= clipped(img) + 0.03, deg


# ----------------------------------------------------------------------------------------------
# bad input


def test_unreadable_source_raises_bad_source_naming_the_file(gen, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiny)
    for path in (bad, tmp_path / "missing.jpg", empty, tiny):
        with pytest.raises(GenerationError) as info:
            gen.generate(_request(path, tmp_path / "out.png"))
        assert info.value.outcome == "bad_source" and info.value.retryable is False
        assert str(path) in str(info.value)
    assert not (tmp_path / "out.png").exists()


def test_random_type_must_be_resolved_first(gen, coffee, tmp_path):
    with pytest.raises(GenerationError) as info:
        gen.generate(_request(coffee, tmp_path / "o.png", vtype="random"))
    assert info.value.outcome == "invalid_request"


def test_rgba_source_and_jpeg_output(tmp_path):
    rgba = np.dstack([load_photo("astronaut.png")[::2, ::2], np.full((256, 256), 200, np.uint8)])
    src = tmp_path / "astronaut_rgba.png"
    Image.fromarray(rgba, "RGBA").save(src)
    res = LocalGenerator(output_format="jpg").generate(_request(src, tmp_path / "v.png", seed=3))
    assert res.output_path.endswith("v.jpg")  # only the suffix changes
    with Image.open(res.output_path) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (256, 256)
