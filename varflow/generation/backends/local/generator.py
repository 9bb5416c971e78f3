"""``LocalGenerator``: the offline backend. Decodes the source, plans the edit from the request's
type, prompt and seed, renders it with the modules of this package and writes the PNG."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from varflow.errors import ConfigurationError
from varflow.generation.backends.base import (
    CONCRETE_TYPES,
    Backend,
    GeneratedVariation,
    GenerationError,
    VariationRequest,
)
from varflow.images.imageio import write_bytes_atomic

from . import composition, looks, objects
from .imaging import Op, luma, sample, to_u8
from .saliency import saliency, subject
from .vocabulary import GRADE_LABELS, STYLE_LABELS, parse_prompt

# style_change without a style or grade word: a seed-chosen look, (name, probability).
# "grade:x" is a colour grade alone, "render:x" a rendering (maybe with a mild grade).
LOOKS = (
    ("grade:teal_orange", 0.07), ("grade:film", 0.07), ("grade:golden_hour", 0.06),
    ("grade:mono", 0.06), ("grade:warm", 0.04), ("grade:cool", 0.04), ("grade:vivid", 0.04),
    ("grade:pastel", 0.04), ("grade:dramatic", 0.05), ("grade:sepia", 0.03),
    ("render:cartoon", 0.09), ("render:sketch", 0.07), ("render:watercolor", 0.08),
    ("render:painting", 0.08), ("render:hdr", 0.06), ("render:glow", 0.05),
    ("render:tilt_shift", 0.02), ("render:poster", 0.03),
)
# a grade keyword alone on style_change: the grade, sometimes with a rendering (seeds differ)
GRADE_COMPANIONS = (("none", 0.5), ("hdr", 0.12), ("glow", 0.12), ("painting", 0.13), ("watercolor", 0.13))
LAST_GRADES = ("mono", "sepia")  # applied after everything else, so the output stays toned
# A prompt that names a look asks for several takes of it, as a photographer would give: each
# attempt has its own light (the side it comes from, how fast it falls off, the bloom where it
# enters), its own time (early: a lighter grade, softer light; late: a deeper grade, the far
# side darker) and, half the time, its own framing. The light's side is the attempt's sector of
# the arc from the left horizon over the top to the right one, in TAKE_ORDER (consecutive takes
# far apart), moved a little by the seed; neighbouring sectors alternate early and late, since
# a bloom moved by one sector alone still reads as the same picture (to a person and to the
# in-run dedup). Each pair below is (early, late).
TAKE_RECROP = 0.5  # share of takes that are also recropped (around the subject)
TAKE_ARC = (-math.pi - 0.17, 0.17)  # radians, image axes (y down): left, above, right
TAKE_ORDER = (0, 4, 2, 1, 3)  # sectors of TAKE_ARC, left to right, in the order takes use them
TAKE_JITTER = 0.15  # share of a sector the seed moves the light either way
TAKE_GRADE_STRENGTH = ((0.55, 0.75), (0.85, 1.05))
TAKE_FALLOFF = ((0.12, 0.2), (0.25, 0.35))  # exposure gain +- this from the lit edge to the far one
TAKE_GLOW = {  # the bloom where the light enters
    "golden_hour": ((0.3, 0.4), (0.45, 0.6)), "sunset": ((0.3, 0.4), (0.45, 0.6)),
    "warm": ((0.2, 0.3), (0.35, 0.45)), "autumn": ((0.2, 0.3), (0.35, 0.45)),
    "teal_orange": ((0.2, 0.3), (0.35, 0.45)),
}
TAKE_GLOW_OTHER = ((0.15, 0.25), (0.3, 0.4))


class LocalGenerator(Backend):
    """Offline generator: natural photo edits chosen by type, prompt and seed (no model, no
    network).

    Options (keyword-only; all change the output, so they belong in any cache key):
    ``output_format``: ``"png"`` (default), ``"jpg"`` or ``"webp"``; only the suffix changes.
    ``png_compression`` (0-9, default 1) and ``jpeg_quality`` (also WebP's).
    ``toned_monochrome``: black-and-white output gets a faint warm or cool print tone (default
    True; False gives neutral grey). ``finishing_grade``: edits other than style changes may get
    a light seed-chosen grade when the prompt names none (default True).
    ``model``: accepted for symmetry with other backends; only ``"local-v1"`` exists.

    Thread-safe; the last decoded source is kept (by content) for the next attempt.
    """

    name = "local"
    default_model = "local-v1"
    model = default_model

    def __init__(
        self,
        *,
        output_format: str = "png",
        png_compression: int = 1,
        jpeg_quality: int = 95,
        toned_monochrome: bool = True,
        finishing_grade: bool = True,
        model: str | None = None,
    ):
        if model not in (None, "", self.model):
            raise ConfigurationError(f"the local backend has one model, {self.model!r}; got model={model!r}")
        fmt = output_format.lower().lstrip(".")
        fmt = "jpg" if fmt == "jpeg" else fmt
        if fmt not in ("png", "jpg", "webp"):
            raise ConfigurationError(f"output_format={output_format!r}: choose png, jpg or webp")
        if not 0 <= png_compression <= 9:
            raise ConfigurationError(f"png_compression={png_compression}: choose 0 (fastest) to 9 (smallest)")
        if not 1 <= jpeg_quality <= 100:
            raise ConfigurationError(f"jpeg_quality={jpeg_quality}: choose 1 to 100")
        self.output_format = fmt
        self.png_compression = int(png_compression)
        self.jpeg_quality = int(jpeg_quality)
        self.toned_monochrome = bool(toned_monochrome)
        self.finishing_grade = bool(finishing_grade)
        self._sources: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # -- public API

    def generate(self, request: VariationRequest) -> GeneratedVariation:
        if request.variation_type not in CONCRETE_TYPES:
            raise GenerationError(
                f"variation type {request.variation_type!r} is not one the local generator "
                f"renders; resolve 'random' first (choose one of {', '.join(CONCRETE_TYPES)})",
                outcome="invalid_request", retryable=False,
            )
        src = self._source(request.source_path)
        rng = np.random.default_rng(request.seed)
        try:
            image, ops, text = self.render(src, request.variation_type, request.prompt, rng, take=request.attempt)
        except objects.NoObject as exc:
            raise GenerationError(
                f"{request.source_path}: {request.variation_type} needs a distinct object and "
                f"found none ({exc}); use another variation type for this photo",
                outcome="no_object", retryable=False) from None
        out_path = self._write(image, request.output_path)
        H, W = image.shape[:2]
        return GeneratedVariation(
            output_path=str(out_path), prompt_sent=text, model=self.model, width=W, height=H,
            detail=json.dumps([op.as_dict() for op in ops], separators=(",", ":")),
        )

    def variation_types_for(self, source_path: str) -> tuple[str, ...]:
        """The types this photo allows: the object edits need a distinct object, and adding or
        moving one a free spot for it (``random`` then chooses among the rest instead of failing
        an attempt)."""
        src = self._source(source_path)
        sal = saliency(src)
        found = objects.find_objects(src, sal, subject(sal))
        allowed = set(CONCRETE_TYPES)
        if not found:
            allowed -= {"object_remove", "object_add", "object_rearrange"}
        elif not any(r.free_standing and objects.free_spot(src, r, sal, np.random.default_rng(0)) is not None
                     for r in found):
            allowed -= {"object_add", "object_rearrange"}  # no copy can stand anywhere
        return tuple(t for t in CONCRETE_TYPES if t in allowed)

    def render(self, src: np.ndarray, vtype: str, prompt: str, rng: np.random.Generator, *, take: int = 0):
        """The variation of ``src`` (H x W x 3 uint8 RGB) as (image, ops, description); ``take``
        (the attempt's index) spreads a named look's takes over the light's directions."""
        grades_kw, styles_kw = parse_prompt(prompt)
        if vtype == "style_change":
            return self._style_change(src, grades_kw, styles_kw, rng, take)
        sal = saliency(src)
        subj = subject(sal)
        ops: list[Op] = []
        if vtype == "composition":
            img, ops, what = composition.compose(src, rng, subj.box, subj.centre)
        else:
            img, ops, what = self._object_edit(src, vtype, sal, subj, rng, take)
        words = [what]
        if styles_kw:  # the prompt asked for a rendering: every type gets it
            style = styles_kw[int(rng.integers(0, len(styles_kw)))]
            img, params = _render(style, img, rng, _band(subj, src.shape))
            ops.append(Op(f"render_{style}", params))
            words.append(f"rendered as {STYLE_LABELS[style]}")
        grades = [(g, float(rng.uniform(0.6, 0.9))) for g in grades_kw]
        if not grades and self.finishing_grade:
            names = [g for g, _ in looks.FINISHING_GRADES]
            p = np.array([w for _, w in looks.FINISHING_GRADES])
            pick = str(rng.choice(names, p=p / p.sum()))
            if pick != "none":
                grades = [(pick, float(rng.uniform(0.25, 0.45)))]
        img, gwords = self._grade(img, grades, ops, rng)
        if gwords:
            light = "" if grades_kw else "light "
            words.append(f"with a {light}{gwords} grade")
        return img, ops, _sentence(words)

    # -- steps

    def _object_edit(self, src, vtype, sal, subj, rng, take=0):
        """Remove, add or move one of the photo's distinct objects; the next candidate is tried
        when one has no free spot. Attempt ``take`` starts at the next object, best first (a
        seed-drawn order per attempt edited the same object again and again: duplicates)."""
        found = objects.find_objects(src, sal, subj)
        if vtype != "object_remove":
            found = [r for r in found if r.free_standing]
        if not found:
            raise objects.NoObject("no compact, free-standing region stands out from a calm surround")
        last = None
        order = objects.best_first(found)  # the same for every attempt: takes walk through it
        start = take % len(order)
        for region in (order[start:] + order[:start])[:4]:
            place = objects.where(region.box, src.shape)
            try:
                if vtype == "object_remove":
                    img, op = objects.remove(src, region, rng)
                    return img, [op], f"removed the object at the {place} and filled in the background behind it"
                if vtype == "object_add":
                    img, ops = objects.add(src, region, sal, rng)
                    spots = " and ".join(objects.where(o.params["to"], src.shape) for o in ops)
                    n = "a copy" if len(ops) == 1 else "two copies"
                    return img, ops, f"added {n} of the object at the {place} (at the {spots})"
                img, op = objects.move(src, region, sal, rng)
                return img, [op], f"moved the object at the {place} to the {objects.where(op.params['to'], src.shape)}"
            except objects.NoObject as exc:
                last = exc
        raise last

    def _style_change(self, src, grades_kw, styles_kw, rng, take=0):
        ops: list[Op] = []
        style = None
        grades: list[tuple[str, float]] = []
        if styles_kw:
            style = styles_kw[int(rng.integers(0, len(styles_kw)))]
        if grades_kw:
            strength = TAKE_GRADE_STRENGTH[_late(take)]
            grades = [(g, float(rng.uniform(*strength))) for g in grades_kw]
            if style is None:
                names = [n for n, _ in GRADE_COMPANIONS]
                p = np.array([w for _, w in GRADE_COMPANIONS])
                companion = str(rng.choice(names, p=p / p.sum()))
                style = None if companion == "none" else companion
        elif style is None:
            names = [n for n, _ in LOOKS]
            p = np.array([w for _, w in LOOKS])
            if float(luma(np.ascontiguousarray(sample(src, 64))).mean()) < 60:
                # paper-white renderings turn a dark picture (a night sky) into a grey one
                p[[names.index("render:watercolor"), names.index("render:sketch")]] *= 0.1
            kind, name = str(rng.choice(names, p=p / p.sum())).split(":")
            if kind == "grade":
                grades = [(name, float(rng.uniform(0.8, 1.0)))]
            else:
                style = name
        if style is not None and not grades and style not in ("sketch", "poster") and rng.random() < 0.4:
            mild = [g for g in ("warm", "cool", "vivid", "film", "teal_orange")]
            grades = [(str(rng.choice(mild)), float(rng.uniform(0.3, 0.5)))]
        img = src
        words = []
        if grades_kw or styles_kw:  # a prompt asked for this look: each attempt is another take of it
            img, take_ops, take_words = _take(img, grades_kw, rng, take)
            ops += take_ops
            words += take_words
        if style is not None:
            band = _band(subject(saliency(img)), img.shape) if style == "tilt_shift" else None
            img, params = _render(style, img, rng, band)
            ops.append(Op(f"render_{style}", params))
            words.append(f"re-rendered as {STYLE_LABELS[style]}")
        img, gwords = self._grade(img, grades, ops, rng)
        if gwords:
            words.append(f"with a {gwords} grade" if style else f"colour-graded with a {gwords} look")
        return img, ops, _sentence(words)

    def _grade(self, img, grades, ops, rng):
        """Apply the grades in order (black and white and sepia last); their words."""
        ordered = [g for g in grades if g[0] not in LAST_GRADES] + [g for g in grades if g[0] in LAST_GRADES]
        for name, strength in ordered:
            if name == "mono":
                img, params = looks.grade_mono(img, strength, rng, toned=self.toned_monochrome)
            else:
                img, params = looks.GRADES[name](img, strength, rng)
            ops.append(Op(f"grade_{name}", {"strength": strength, **params}))
        return img, " and ".join(GRADE_LABELS[n] for n, _ in ordered)

    _CACHE_ENTRIES = 1  # 3 bytes per pixel: 8 MB for a 2048 x 1365 source

    def _source(self, path: str) -> np.ndarray:
        """The decoded source, read-only, cached by content (not by path)."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError as exc:
            raise GenerationError(f"source image {path} does not exist", outcome="bad_source",
                                  retryable=False) from exc
        except OSError as exc:
            raise GenerationError(f"cannot read source image {path}: {exc}", outcome="bad_source",
                                  retryable=False) from exc
        key = hashlib.blake2b(data, digest_size=16).digest()
        with self._lock:
            hit = self._sources.get(key)
            if hit is not None:
                self._sources.move_to_end(key)
                return hit
        src = _decode(data, path)
        src.flags.writeable = False
        with self._lock:
            self._sources[key] = src
            while len(self._sources) > self._CACHE_ENTRIES:
                self._sources.popitem(last=False)
        return src

    def _write(self, image: np.ndarray, output_path: str) -> Path:
        """Encode and write atomically (temp file in the same directory, then ``os.replace``)."""
        path = Path(output_path)
        suffix = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}[self.output_format]
        if path.suffix.lower() != suffix:
            path = path.with_suffix(suffix)
        bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
        if self.output_format == "png":
            # Huffman-only deflate over the "sub" filter: half the time of the default strategy
            # on photos, for a few percent more bytes (LZ77 finds little to match in a photo)
            ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, self.png_compression,
                                                 cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
                                                 cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB])
        elif self.output_format == "jpg":
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        else:
            ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, self.jpeg_quality])
        if not ok:
            raise GenerationError(f"could not encode the variation for {path}", outcome="error")
        try:
            return write_bytes_atomic(buf.tobytes(), path)
        except OSError as exc:
            raise GenerationError(f"cannot write the variation to {path}: {exc}", outcome="error",
                                  retryable=False) from exc


def _take(img, grades_kw, rng, take: int):
    """Take number ``take`` of a named look: a recrop around the subject (``TAKE_RECROP`` of the
    time) and light from the take's side of ``TAKE_ARC``, tinted like the look's light."""
    ops: list[Op] = []
    words = []
    if rng.random() < TAKE_RECROP:
        subj = subject(saliency(img))
        img, op = composition.recrop(img, rng, subj.box, subj.centre)
        ops.append(op)
        words.append(f"recropped to {round(op.params['side'] * 100)}% of each side")
    family = next((g for g in grades_kw if g in looks.LIGHT_TINTS), None)
    sector, late = TAKE_ORDER[take % len(TAKE_ORDER)], _late(take)
    width = (TAKE_ARC[1] - TAKE_ARC[0]) / len(TAKE_ORDER)
    angle = TAKE_ARC[0] + width * (sector + 0.5 + float(rng.uniform(-TAKE_JITTER, TAKE_JITTER)))
    falloff = float(rng.uniform(*TAKE_FALLOFF[late]))
    glow = float(rng.uniform(*TAKE_GLOW.get(family, TAKE_GLOW_OTHER)[late]))
    tint = looks.LIGHT_TINTS.get(family, (1.0, 1.0, 1.0))
    if any(g in LAST_GRADES for g in grades_kw):
        tint = (1.0, 1.0, 1.0)
    img, params = looks.relight(img, angle=angle, falloff=falloff, glow=glow, tint=tint,
                                reach=float(rng.uniform(0.7, 1.3)))
    ops.append(Op("relight", params))
    words.append(f"{('early', 'late')[late]} light from {_side(angle)}")
    return img, ops, words


def _late(take: int) -> int:
    """1 when take number ``take`` is a late one (its sector is even), else 0."""
    return int(TAKE_ORDER[take % len(TAKE_ORDER)] % 2 == 0)


def _side(angle: float) -> str:
    """Where light at ``angle`` (radians, image axes: y down) comes from, in words."""
    deg = math.degrees(angle) % 360
    names = ("the right", "the lower right", "below", "the lower left", "the left", "the upper left", "above",
             "the upper right")
    return names[int(((deg + 22.5) % 360) // 45)]


def _render(style, img, rng, band):
    if style == "tilt_shift":
        return looks.render_tilt_shift(img, 1.0, rng, band=band)
    return looks.RENDERINGS[style](img, 1.0, rng)


def _band(subj, shape) -> tuple[float, float]:
    """The subject's vertical extent as shares of the height: what a tilt-shift keeps sharp."""
    y, h = subj.box[1], subj.box[3]
    return y / shape[0], (y + h) / shape[0]


def _sentence(words: list[str]) -> str:
    text = ", ".join(w for w in words if w)
    return text[0].upper() + text[1:] + "."


def _decode(data: bytes, path: str) -> np.ndarray:
    """The source as H x W x 3 uint8 RGB.

    Fast path: OpenCV decodes 8-bit PNG/JPEG/WebP/BMP/TIFF (JPEG upright by its EXIF
    orientation; alpha composited on white, as varflow's scoring does). Anything else goes
    through ``varflow.images.imageio.load_rgb`` (Pillow), whose errors name the problem.
    """
    arr = None
    if data:
        buf = np.frombuffer(data, np.uint8)
        is_jpeg = data[:2] == b"\xff\xd8"
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED)
        if dec is not None and dec.dtype == np.uint8:
            if dec.ndim == 2:
                arr = cv2.cvtColor(dec, cv2.COLOR_GRAY2RGB)
            elif dec.shape[2] == 3:
                arr = cv2.cvtColor(dec, cv2.COLOR_BGR2RGB)
            elif dec.shape[2] == 4:
                alpha = dec[:, :, 3:4].astype(np.float32) / 255.0
                rgb = cv2.cvtColor(dec[:, :, :3], cv2.COLOR_BGR2RGB).astype(np.float32)
                arr = to_u8(rgb * alpha + 255.0 * (1.0 - alpha))
    if arr is None:  # formats or depths OpenCV does not decode to 8-bit RGB here
        from varflow.images.imageio import ImageReadError, load_rgb

        try:
            arr = np.asarray(load_rgb(path), dtype=np.uint8)
        except ImageReadError as exc:
            raise GenerationError(f"cannot read source image {exc}", outcome="bad_source",
                                  retryable=False) from exc
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad source
            raise GenerationError(f"cannot read source image {path}: {type(exc).__name__}: {exc}",
                                  outcome="bad_source", retryable=False) from exc
    if arr.ndim != 3 or arr.shape[0] < 32 or arr.shape[1] < 32:
        raise GenerationError(
            f"source image {path} is {arr.shape[1] if arr.ndim > 1 else 0}x{arr.shape[0]} px; "
            "the local generator needs at least 32x32", outcome="bad_source", retryable=False)
    return np.ascontiguousarray(arr)
