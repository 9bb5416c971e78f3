"""The prompt words the local generator understands: colour grades and renderings.

The local generator has no language model, so a prompt steers it through keywords: a grade word
("golden hour", "b&w", ...) chooses the colour grade, a style word ("cartoon", "sketch", ...)
the rendering. Matching is case-insensitive on whole words, in the order they appear.
"""

from __future__ import annotations

import re

GRADE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "golden_hour": ("golden hour", "golden"),
    "sunset": ("sunset", "dusk"),
    "warm": ("warm", "warmer", "summer"),
    "cool": ("cool", "cooler", "cold", "blue hour"),
    "teal_orange": ("teal and orange", "teal orange", "teal-orange", "orange and teal", "cinematic",
                    "blockbuster"),
    "winter": ("winter", "snow", "snowy", "frost", "frosty"),
    "night": ("night", "moonlight", "nighttime", "midnight"),
    "autumn": ("autumn", "fall"),
    "film": ("vintage", "retro", "film", "analog", "analogue", "faded", "old photo"),
    "sepia": ("sepia",),
    "mono": ("black and white", "black & white", "monochrome", "grayscale", "greyscale",
             "b&w", "noir", "grey scale", "gray scale"),
    "vivid": ("vivid", "vibrant", "saturated", "colorful", "colourful"),
    "pastel": ("pastel", "soft", "matte"),
    "dramatic": ("dramatic", "high contrast", "moody", "contrasty"),
}

STYLE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "cartoon": ("cartoon", "comic", "illustration", "anime", "cel shaded", "cel-shaded",
                "graphic novel", "ink", "line art"),
    "poster": ("pop art", "posterize", "posterise", "poster"),
    "sketch": ("sketch", "pencil", "drawing", "charcoal", "graphite"),
    "watercolor": ("watercolor", "watercolour", "aquarelle"),
    "painting": ("oil painting", "oil paint", "painting", "painterly", "impasto", "canvas"),
    "hdr": ("hdr", "detailed", "crisp", "clarity", "gritty"),
    "glow": ("dreamy", "glow", "glowing", "orton", "ethereal"),
    "tilt_shift": ("tilt shift", "tilt-shift", "miniature", "diorama"),
}

GRADE_LABELS = {
    "golden_hour": "golden-hour", "sunset": "sunset", "warm": "warm", "cool": "cool",
    "teal_orange": "teal-and-orange", "winter": "wintry", "night": "night", "autumn": "autumn",
    "film": "faded-film", "sepia": "sepia", "mono": "black-and-white", "vivid": "vivid",
    "pastel": "soft pastel", "dramatic": "dramatic",
}

STYLE_LABELS = {
    "cartoon": "a cartoon (flat colours, ink outlines)",
    "poster": "a pop-art poster",
    "sketch": "a pencil sketch",
    "watercolor": "a watercolour",
    "painting": "an oil painting",
    "hdr": "a detailed HDR-style photo",
    "glow": "a dreamy glow photo",
    "tilt_shift": "a tilt-shift miniature",
}


def _keyword_pattern(words: tuple[str, ...]) -> re.Pattern:
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alts})(?![a-z0-9])")


_GRADE_RES = {k: _keyword_pattern(v) for k, v in GRADE_KEYWORDS.items()}
_STYLE_RES = {k: _keyword_pattern(v) for k, v in STYLE_KEYWORDS.items()}


def parse_prompt(prompt: str) -> tuple[list[str], list[str]]:
    """The grades and styles named in ``prompt``, each in order of first appearance."""
    text = (prompt or "").lower()

    def found(patterns):
        hits = [(m.start(), key) for key, rx in patterns.items() if (m := rx.search(text))]
        return [key for _, key in sorted(hits)]

    return found(_GRADE_RES), found(_STYLE_RES)
