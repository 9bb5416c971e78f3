"""What a viewer shows of an image: the EXIF orientation applied, transparency on white, RGB.

The one rule every reader (varflow.images.imageio) and every in-memory input (varflow.quality.metrics,
varflow.duplicates.hashing) follows, so a file and its pixels score and hash alike.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps


def upright(im: Image.Image) -> Image.Image:
    """As a viewer shows it: the EXIF orientation applied."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block should not cost the pixels
        return im


def flatten_to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white (what a viewer shows for a transparent PNG)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im
