"""Looks: colour grades (tone curves, LUT-style colour moves) and renderings (painterly, cartoon,
sketch, ...), the way a photo app's filters change a picture without changing what it shows.

Every function takes a uint8 RGB array, a strength in [0, 1] and a ``numpy.random.Generator``
and returns the new array and the parameters it used. Grades are curves with fixed end points
(monotone, so they never clip a highlight that was not clipped), chroma moves in YCrCb or Lab,
and a vignette or glow where the look has one. Renderings that are costly at full resolution
run at a working size and are upscaled: their result is smooth, so nothing is lost.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .imaging import (
    RAMP,
    apply_curves,
    blend,
    gamma_curve,
    guided_filter,
    luma,
    resize_long,
    resize_to,
    s_curve,
    sample,
    saturation,
    to_u8,
    vignette,
)

# ----------------------------------------------------------------------------------------------
# colour grades


def grade_warm(img, s, rng):
    g = float(rng.uniform(0.85, 1.15)) * s
    out = apply_curves(img, [gamma_curve(1 - 0.16 * g), gamma_curve(1 - 0.03 * g), gamma_curve(1 + 0.22 * g)])
    return out, {"strength": g}


def grade_cool(img, s, rng):
    g = float(rng.uniform(0.85, 1.15)) * s
    out = apply_curves(img, [gamma_curve(1 + 0.18 * g), gamma_curve(1 + 0.02 * g), gamma_curve(1 - 0.16 * g)])
    return out, {"strength": g}


def grade_golden_hour(img, s, rng):
    g = float(rng.uniform(0.85, 1.1)) * s
    out = apply_curves(img, [gamma_curve(1 - 0.2 * g), gamma_curve(1 - 0.06 * g),
                             gamma_curve(1 + 0.3 * g, 0, 255 - 22 * g)])
    out = saturation(out, 1 + 0.15 * g, vibrance=True)
    out, glow = _glow(out, 0.14 * g, sigma_frac=0.02)
    return out, {"strength": g, **glow}


def grade_sunset(img, s, rng):
    g = float(rng.uniform(0.85, 1.1)) * s
    # magenta-purple shadows, orange highlights
    r = gamma_curve(1 - 0.18 * g)
    gr = gamma_curve(1 + 0.14 * g)
    b = gamma_curve(1 + 0.2 * g, 14 * g, 255 - 30 * g)
    out = apply_curves(img, [r, gr, b])
    return saturation(out, 1 + 0.2 * g, vibrance=True), {"strength": g}


def grade_teal_orange(img, s, rng):
    """Shadows towards teal, highlights (and skin) towards orange, in Lab's a/b plane."""
    g = float(rng.uniform(0.8, 1.1)) * s
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    L = lab[:, :, 0].astype(np.float32) / 255.0
    w = L * L * (3 - 2 * L)  # 0 in shadows, 1 in highlights
    a = lab[:, :, 1].astype(np.float32)
    b = lab[:, :, 2].astype(np.float32)
    a += g * (w * 5.0 - (1 - w) * 9.0)
    b += g * (w * 13.0 - (1 - w) * 11.0)
    lab[:, :, 1] = to_u8(a)
    lab[:, :, 2] = to_u8(b)
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    out = apply_curves(out, s_curve(0.25 * g))
    return saturation(out, 1 + 0.08 * g), {"strength": g}


def grade_winter(img, s, rng):
    g = float(rng.uniform(0.85, 1.1)) * s
    out = saturation(img, 1 - 0.35 * g)
    out = apply_curves(out, [gamma_curve(1 + 0.05 * g, 10 * g), gamma_curve(1 - 0.02 * g, 12 * g),
                             gamma_curve(1 - 0.14 * g, 18 * g)])
    return out, {"strength": g}


def grade_night(img, s, rng):
    g = float(rng.uniform(0.85, 1.1)) * s
    out = saturation(img, 1 - 0.4 * g)
    base = 1 + 0.5 * g
    out = apply_curves(out, [gamma_curve(base * (1 + 0.15 * g)), gamma_curve(base * (1 + 0.04 * g)),
                             gamma_curve(base * (1 - 0.12 * g), 6 * g)])
    return vignette(out, 0.3 * g), {"strength": g, "vignette": 0.3 * g}


def grade_autumn(img, s, rng):
    """Greens and yellow-greens turned towards amber, then a warm tone."""
    g = float(rng.uniform(0.85, 1.1)) * s
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hue = RAMP[:180].copy()
    band = (hue > 22) & (hue < 90)
    # pull hues 22-90 (yellow-green to green) towards 14 (amber), most in the middle of the band
    pull = np.where(band, np.sin((hue - 22) / 68 * math.pi) * 0.75 * g, 0.0)
    hue_lut = np.zeros(256, np.float32)
    hue_lut[:180] = hue + (14 - hue) * pull
    hsv[:, :, 0] = to_u8(hue_lut)[hsv[:, :, 0]]
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    out, _ = grade_warm(out, 0.6 * g, rng)
    return saturation(out, 1 + 0.1 * g, vibrance=True), {"strength": g}


def grade_film(img, s, rng):
    """Faded film: lifted blacks, rolled-off whites, muted colour, warm highlights, a vignette."""
    g = float(rng.uniform(0.85, 1.1)) * s
    out = saturation(img, 1 - 0.25 * g)
    lo, hi = 26 * g, 255 - 14 * g
    base = s_curve(0.2 * g)
    curves = []
    for shift_lo, shift_hi in ((0, 6), (4, 0), (10, -12)):  # greenish-blue shadows, warm highlights
        c = lo + shift_lo * g + base * (hi + shift_hi * g - lo - shift_lo * g) / 255.0
        curves.append(np.clip(c, 0, 255))
    out = apply_curves(out, curves)
    amount = float(rng.uniform(0.15, 0.3)) * g
    return vignette(out, amount), {"strength": g, "vignette": amount}


def grade_pastel(img, s, rng):
    """Soft matte: lifted shadows, less contrast, muted colour, a faint rose-lilac tint."""
    g = float(rng.uniform(0.85, 1.1)) * s
    out = saturation(img, 1 - 0.3 * g)
    lo, hi = 38 * g, 255 - 6 * g
    c = lo + RAMP * (hi - lo) / 255.0
    out = apply_curves(out, [np.clip(c + 5 * g * RAMP / 255, 0, 255), c, np.clip(c + 7 * g * RAMP / 255, 0, 255)])
    return out, {"strength": g}


def grade_vivid(img, s, rng):
    g = float(rng.uniform(0.85, 1.15)) * s
    out = saturation(img, 1 + 0.4 * g, vibrance=True)
    return apply_curves(out, s_curve(0.25 * g, _mid_grey(img))), {"strength": g}


def grade_dramatic(img, s, rng):
    g = float(rng.uniform(0.85, 1.1)) * s
    out = apply_curves(img, s_curve(0.55 * g, _mid_grey(img)))
    out = saturation(out, 1 - 0.15 * g)
    amount = 0.35 * g
    return vignette(out, amount), {"strength": g, "vignette": amount}


MONO_FILTERS = {  # channel mixer weights (R, G, B): how a black-and-white film sees colour
    "neutral": (0.299, 0.587, 0.114),
    "red filter": (0.55, 0.38, 0.07),
    "green filter": (0.25, 0.65, 0.10),
    "orange filter": (0.45, 0.45, 0.10),
}


def grade_mono(img, s, rng, *, toned: bool = True):
    """Black and white through a seed-chosen colour filter and contrast; ``toned`` adds a faint
    warm or cool print tone (channels within a few levels of grey)."""
    name = str(rng.choice(list(MONO_FILTERS)))
    w = np.array(MONO_FILTERS[name], np.float32)
    grey = to_u8(img.astype(np.float32) @ w)
    k = float(rng.uniform(0.1, 0.35))
    grey = cv2.LUT(grey, to_u8(s_curve(k, float(np.mean(sample(grey))) / 255)))
    out = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    params = {"filter": name, "contrast": k}
    if toned:
        warm = bool(rng.random() < 0.6)
        t = RAMP / 255.0
        bump = 4.0 * np.sin(t * math.pi)  # zero at black and white, a few levels in the mids
        sign = 1.0 if warm else -1.0
        out = apply_curves(out, [np.clip(RAMP + sign * bump, 0, 255), RAMP,
                                 np.clip(RAMP - sign * bump, 0, 255)])
        params["tone"] = "warm" if warm else "cool"
    return out, params


def grade_sepia(img, s, rng):
    """Monochrome mapped through a brown-to-cream print tone, mixed with the photo by ``s``."""
    grey = luma(img)
    grey = cv2.LUT(grey, to_u8(s_curve(float(rng.uniform(0.1, 0.3)))))
    t = RAMP / 255.0
    tone = [255 * np.power(t, 0.85), 255 * np.power(t, 1.06) * 0.96, 255 * np.power(t, 1.4) * 0.88]
    sep = apply_curves(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), tone)
    g = min(1.0, 0.75 + 0.25 * s)
    return blend(img, sep, g), {"strength": g}


GRADES = {
    "golden_hour": grade_golden_hour,
    "sunset": grade_sunset,
    "warm": grade_warm,
    "cool": grade_cool,
    "teal_orange": grade_teal_orange,
    "winter": grade_winter,
    "night": grade_night,
    "autumn": grade_autumn,
    "film": grade_film,
    "sepia": grade_sepia,
    "mono": grade_mono,
    "vivid": grade_vivid,
    "pastel": grade_pastel,
    "dramatic": grade_dramatic,
}

# the light's colour for each grade's family (RGB gains at full strength): a warm sun for the
# warm grades, a cold sky for the cool ones, white light for the rest (black and white, renderings)
LIGHT_TINTS = {
    "golden_hour": (1.0, 0.8, 0.5), "sunset": (1.0, 0.66, 0.5), "warm": (1.0, 0.88, 0.7),
    "autumn": (1.0, 0.85, 0.6), "teal_orange": (1.0, 0.85, 0.65),
    "cool": (0.8, 0.9, 1.0), "winter": (0.85, 0.93, 1.0), "night": (0.7, 0.8, 1.0),
}


def relight(img, *, angle: float, falloff: float, glow: float, tint=(1.0, 1.0, 1.0), reach: float = 1.0):
    """Light from one side: the frame brighter towards a light source outside it (``angle``,
    radians, 0 = from the right, -pi/2 = from above) and darker away from it (``falloff``: the
    exposure gain at the lit edge is 1 + falloff, at the far edge 1 - falloff), plus a soft bloom
    of the light's colour where it enters (``glow``, screen-blended, spread by ``reach``).

    Exposure moves through x * k / (1 + (k - 1) x), which keeps black and white where they are,
    so nothing clips that was not clipped; the tint colours the lit side only."""
    H, W = img.shape[:2]
    small_w, small_h = max(8, W // 8), max(8, H // 8)  # smooth fields: compute small, upscale
    aspect = W / H
    xs = (np.arange(small_w, dtype=np.float32) + 0.5) / small_w * 2 - 1
    ys = (np.arange(small_h, dtype=np.float32) + 0.5) / small_h * 2 - 1
    X, Y = np.meshgrid(xs * min(1.0, aspect), ys * min(1.0, 1 / aspect))
    dx, dy = math.cos(angle), math.sin(angle)
    t = (X * dx + Y * dy) / math.hypot(min(1.0, aspect), min(1.0, 1 / aspect))  # -1 far .. 1 lit
    lit = np.clip(0.5 + 0.5 * t, 0, 1)
    lit = lit * lit * (3 - 2 * lit)
    gain = 1 + falloff * (2 * lit - 1)
    tint = np.asarray(tint, np.float32)
    gains = gain[..., None] * (1 + (tint - 1) * (lit[..., None] * falloff * 2))
    # the bloom: centred just outside the frame on the light's side
    sx, sy = 1.15 * dx * min(1.0, aspect), 1.15 * dy * min(1.0, 1 / aspect)
    d2 = (X - sx) ** 2 + (Y - sy) ** 2
    bloom = glow * np.exp(-d2 / (2 * (0.55 * reach) ** 2))
    gains = cv2.resize(gains, (W, H), interpolation=cv2.INTER_CUBIC)
    bloom = cv2.resize(bloom.astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    x = img.astype(np.float32) / 255.0
    k = np.maximum(gains, 0.05)
    out = x * k / (1 + (k - 1) * x)
    light = bloom[..., None] * tint
    out = 1 - (1 - out) * (1 - np.clip(light, 0, 1))
    return to_u8(out * 255.0), {"angle_degrees": math.degrees(angle), "falloff": falloff, "glow": glow,
                                "reach": reach}


# a light finishing grade for edits that are not style changes: (name, probability)
FINISHING_GRADES = (("none", 0.35), ("warm", 0.15), ("cool", 0.12), ("vivid", 0.14),
                    ("film", 0.08), ("dramatic", 0.08), ("teal_orange", 0.08))


def _mid_grey(img) -> float:
    return float(np.clip(np.median(luma(np.ascontiguousarray(sample(img, 128)))) / 255.0, 0.25, 0.75))


def _glow(img, amount, *, sigma_frac):
    """Screen-blend a blurred copy of the highlights (the soft bloom of backlit light)."""
    if amount <= 0:
        return img, {}
    small, _ = resize_long(img, 256)
    sigma = max(1.0, sigma_frac * max(small.shape[:2]))
    f = small.astype(np.float32) / 255.0
    hi = np.clip((f - 0.45) / 0.55, 0, 1)
    blur = cv2.GaussianBlur(hi, (0, 0), sigma)
    blur = cv2.resize(blur, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    x = img.astype(np.float32) / 255.0
    out = 1 - (1 - x) * (1 - amount * blur)
    return to_u8(out * 255.0), {"glow": amount}


# ----------------------------------------------------------------------------------------------
# renderings


def render_cartoon(img, s, rng, *, levels: tuple[int, int] = (5, 8), poster: bool = False):
    """Toon shading after Winnemoller et al.: edge-preserving smoothing, the lightness quantised
    in soft steps (hues kept, so skin stays skin), and ink outlines from a difference of
    Gaussians of the smoothed lightness."""
    work, _ = resize_long(img, 1024)
    L_side = max(work.shape[:2])
    sigma_s = float(rng.uniform(30, 60))
    smooth = cv2.edgePreservingFilter(work, flags=cv2.RECURS_FILTER, sigma_s=sigma_s, sigma_r=0.4)
    smooth = cv2.bilateralFilter(smooth, 7, 30, 5)
    if poster:
        smooth = saturation(smooth, 1.5)
    lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB).astype(np.float32)
    light = lab[:, :, 0] * (100.0 / 255.0)
    n = int(rng.integers(levels[0], levels[1] + 1))
    step = 100.0 / n
    nearest = np.floor(light / step) * step + step / 2
    sharp = 0.6 if poster else 0.35  # how hard the steps are (per lightness unit)
    q = nearest + step / 2 * np.tanh(sharp * (light - nearest))
    lab[:, :, 0] = np.clip(q, 0, 100) * (255.0 / 100.0)
    flat = cv2.cvtColor(to_u8(lab), cv2.COLOR_LAB2RGB)
    # outlines: XDoG of the smoothed lightness, drawn where it is clearly negative
    sigma = max(0.8, L_side / 700)
    g1 = cv2.GaussianBlur(light, (0, 0), sigma)
    g2 = cv2.GaussianBlur(light, (0, 0), sigma * 1.6)
    dog = g1 - 0.985 * g2
    thr = float(rng.uniform(0.0, 0.6))
    ink = np.clip(-(dog + thr) * 0.5, 0, 1)
    ink = _drop_specks(ink, min_px=max(10, int(L_side * L_side / 60000)))
    weight = float(rng.uniform(0.65, 0.85))
    out = to_u8(flat.astype(np.float32) * (1 - weight * ink)[..., None])
    out = resize_to(out, img.shape, cv2.INTER_LINEAR)
    return out, {"lightness_levels": n, "smoothing": sigma_s, "ink_threshold": thr,
                 "ink_weight": weight, "poster": poster}


def render_poster(img, s, rng):
    return render_cartoon(img, s, rng, levels=(3, 5), poster=True)


def render_sketch(img, s, rng):
    """Colour-dodge pencil rendering (grey / blurred inverse), optionally tinted by the photo's
    colours, like ``cv2.pencilSketch``'s colour output but at full resolution."""
    grey = luma(img).astype(np.float32)
    L = max(img.shape[:2])
    sigma = float(rng.uniform(0.006, 0.012)) * L
    inv_blur = cv2.GaussianBlur(255.0 - grey, (0, 0), sigma)
    # colour dodge, with an offset that keeps the dark areas' noise from turning into scribbles
    c = 24.0
    dodge = np.clip((grey + c) * 255.0 / (255.0 - inv_blur + c), 0, 255)
    # the dodge leaves faint lines: deepen them with a power curve
    depth = float(rng.uniform(2.0, 3.2))
    pencil = 255.0 * np.power(dodge / 255.0, depth)
    # paper is never pure white, graphite never pure black
    pencil = 20 + pencil * (246 - 20) / 255.0
    colour = float(rng.choice([0.0, 0.45, 0.7], p=[0.3, 0.35, 0.35]))
    if colour > 0:
        wash = saturation(img, 1.15).astype(np.float32)
        wash = 255 - (255 - wash) * colour  # light washes of the photo's colours
        out = pencil[..., None] * wash / 255.0
    else:
        out = np.repeat(pencil[..., None], 3, axis=2)
    return to_u8(out), {"blur_sigma": sigma, "depth": depth, "colour": colour}


def render_watercolor(img, s, rng):
    """Watercolour: edge-preserving abstraction (``cv2.edgePreservingFilter``) painted as
    pigment on paper: the colours thinned towards the paper's white, pigment pooling a little at
    the edges of the washes (wet edges), and a faint low-frequency mottling of the density."""
    work, _ = resize_long(img, 800)
    h, w = work.shape[:2]
    sigma_s = float(rng.uniform(40, 80))
    sigma_r = float(rng.uniform(0.35, 0.5))
    abst = cv2.edgePreservingFilter(work, flags=cv2.RECURS_FILTER, sigma_s=sigma_s, sigma_r=sigma_r)
    abst = cv2.bilateralFilter(abst, 9, 40, 7)
    density = 1.0 - abst.astype(np.float32) / 255.0
    grey = cv2.GaussianBlur(luma(abst).astype(np.float32), (0, 0), 1.2)
    grad = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    edge = np.clip(grad / (np.percentile(grad, 97) + 1e-3), 0, 1)
    wet = float(rng.uniform(0.2, 0.4))
    mottle = cv2.resize(rng.normal(0, 1, (max(2, h // 40), max(2, w // 40))).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    thin = float(rng.uniform(0.72, 0.85))  # how much the paper shows through
    density = density * thin * (1 + wet * edge)[..., None]
    # mottling shows in the mid-tone washes, not in the darkest pigment
    density = density * (1 + 0.08 * mottle[..., None] * density * (1 - density))
    out = to_u8(255.0 * (1.0 - np.clip(density, 0, 1)))
    out = saturation(out, float(rng.uniform(1.0, 1.15)))
    out = resize_to(out, img.shape, cv2.INTER_CUBIC)
    return out, {"sigma_s": sigma_s, "sigma_r": sigma_r, "wet_edges": wet, "pigment": thin}


def render_painting(img, s, rng):
    """Kuwahara-style painterly filter (each pixel takes the mean of its calmest quadrant) after
    an edge-preserving smoothing, then a touch of local contrast."""
    work, _ = resize_long(img, 900)
    L = max(work.shape[:2])
    smooth = cv2.edgePreservingFilter(work, flags=cv2.RECURS_FILTER, sigma_s=float(rng.uniform(20, 40)),
                                      sigma_r=0.3)
    radius = max(2, int(round(float(rng.uniform(0.004, 0.008)) * L)))
    paint = _kuwahara(smooth, radius)
    paint = saturation(paint, float(rng.uniform(1.05, 1.25)), vibrance=True)
    paint = resize_to(paint, img.shape, cv2.INTER_CUBIC)
    out, _ = _local_contrast(paint, amount=0.35, radius_frac=0.01)
    return out, {"radius_px": radius, "working_long_side": L}


def render_hdr(img, s, rng):
    """Local tone mapping: the guided-filter base is compressed, the detail boosted."""
    amount = float(rng.uniform(0.6, 1.0))
    out, params = _local_contrast(img, amount=amount * 1.6, radius_frac=0.015, compress=0.35 * amount)
    out = saturation(out, 1 + 0.15 * amount, vibrance=True)
    return out, {"amount": amount, **params}


def render_glow(img, s, rng):
    """The Orton effect: a bright, blurred copy screened over the photo, a little more colour."""
    amount = float(rng.uniform(0.3, 0.5))
    small, _ = resize_long(img, 512)
    sigma = float(rng.uniform(0.012, 0.025)) * max(small.shape[:2])
    bright = apply_curves(small, gamma_curve(0.7))
    blur = cv2.GaussianBlur(bright, (0, 0), sigma)
    blur = resize_to(blur, img.shape, cv2.INTER_LINEAR).astype(np.float32) / 255.0
    x = img.astype(np.float32) / 255.0
    screen = 1 - (1 - x) * (1 - blur)
    out = to_u8((x + (screen - x) * amount) * 255.0)
    out = apply_curves(out, s_curve(0.2))
    out = saturation(out, 1.12, vibrance=True)
    return out, {"amount": amount, "blur_sigma_frac": sigma / max(small.shape[:2])}


def render_tilt_shift(img, s, rng, *, band: tuple[float, float] | None = None):
    """A miniature-model look: a sharp horizontal band (``band``: its top and bottom as shares
    of the height, e.g. the subject's extent), blur growing above and below it, more saturation
    and contrast."""
    H, W = img.shape[:2]
    if band is None:
        centre, half = float(rng.uniform(0.45, 0.65)), float(rng.uniform(0.1, 0.18))
    else:
        centre = float(np.clip((band[0] + band[1]) / 2, 0.2, 0.8))
        half = float(np.clip((band[1] - band[0]) / 2, 0.1, 0.3))
    small, sc = resize_long(img, 768)
    sigma = max(1.5, 0.006 * max(small.shape[:2]))
    blurred = cv2.GaussianBlur(small, (0, 0), sigma)
    blurred2 = cv2.GaussianBlur(small, (0, 0), sigma * 2.2)
    blurred = resize_to(blurred, img.shape, cv2.INTER_LINEAR)
    blurred2 = resize_to(blurred2, img.shape, cv2.INTER_LINEAR)
    y = (np.arange(H, dtype=np.float32) + 0.5) / H
    d = np.clip((np.abs(y - centre) - half) / 0.25, 0, 1)  # 0 in the band, 1 far from it
    a1 = np.clip(d * 2, 0, 1)[:, None]
    a2 = np.clip(d * 2 - 1, 0, 1)[:, None]
    out = blend(img, blurred, np.repeat(a1, W, axis=1))
    out = blend(out, blurred2, np.repeat(a2, W, axis=1))
    out = saturation(out, 1.3, vibrance=True)
    out = apply_curves(out, s_curve(0.25, _mid_grey(img)))
    return out, {"band_centre": centre, "band_half_height": half}


RENDERINGS = {
    "cartoon": render_cartoon,
    "poster": render_poster,
    "sketch": render_sketch,
    "watercolor": render_watercolor,
    "painting": render_painting,
    "hdr": render_hdr,
    "glow": render_glow,
    "tilt_shift": render_tilt_shift,
}


# ----------------------------------------------------------------------------------------------
# helpers


def _drop_specks(ink: np.ndarray, min_px: int) -> np.ndarray:
    """Remove ink components smaller than ``min_px`` pixels (texture noise, not outlines)."""
    binm = (ink > 0.15).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(binm, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return ink * keep[lab]


def _kuwahara(img: np.ndarray, r: int) -> np.ndarray:
    """Gaussian Kuwahara: per pixel, the mean of the calmest of four Gaussian-weighted
    neighbourhoods centred half a radius away diagonally. One blur per statistic; the four
    neighbourhoods are shifted views of it, so no blocky squares and O(pixels) cost."""
    f = img.astype(np.float32)
    g = luma(img).astype(np.float32)
    sigma = max(1.0, r / 2)
    mean = cv2.GaussianBlur(f, (0, 0), sigma)
    gm = cv2.GaussianBlur(g, (0, 0), sigma)
    var = cv2.GaussianBlur(g * g, (0, 0), sigma) - gm * gm
    H, W = g.shape
    d = max(1, r // 2)
    pm = cv2.copyMakeBorder(mean, d, d, d, d, cv2.BORDER_REFLECT)
    pv = cv2.copyMakeBorder(var, d, d, d, d, cv2.BORDER_REFLECT)
    best_var = None
    out = None
    for dy, dx in ((-d, -d), (-d, d), (d, -d), (d, d)):
        v = pv[d + dy:d + dy + H, d + dx:d + dx + W]
        m = pm[d + dy:d + dy + H, d + dx:d + dx + W]
        if best_var is None:
            best_var, out = v, m
        else:
            better = v < best_var
            best_var = np.where(better, v, best_var)
            out = np.where(better[..., None], m, out)
    return to_u8(out)


def _local_contrast(img, *, amount, radius_frac, compress=0.0):
    """Boost luma detail above a guided-filter base (edge-aware, so no halos at strong edges);
    ``compress`` flattens the base (local tone mapping). Colour follows the luma ratio."""
    H, W = img.shape[:2]
    f = img.astype(np.float32)
    y = luma(img).astype(np.float32) / 255.0
    r = max(2, int(round(radius_frac * max(H, W))))
    base = guided_filter(y, y, r, 0.01)
    detail = y - base
    mean = float(base.mean())
    new_base = base + (mean - base) * compress
    new_y = np.clip(new_base + detail * (1 + amount), 0.0, 1.0)
    ratio = (new_y + 0.02) / (y + 0.02)
    out = to_u8(f * ratio[..., None])
    return out, {"detail_gain": 1 + amount, "base_compression": compress}
