"""Contact sheets: one row per original, its variations beside it, each thumbnail captioned.

A contact sheet is how a person judges variations (side by side with the original, at a glance),
so ``make demo`` and reviews of the generators write one. Pure Pillow and numpy: nothing here
scores anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ImageLike = np.ndarray | Image.Image | str | Path
Thumb = ImageLike | tuple[ImageLike, str]


def make_contact_sheet(
    rows: Sequence[tuple[str, Sequence[Thumb]]],
    *,
    thumb_height: int = 200,
    gap: int = 8,
    caption_size: int = 11,
    label_size: int = 14,
    caption_lines: int = 2,
    background: tuple[int, int, int] = (250, 250, 248),
    text_color: tuple[int, int, int] = (25, 25, 25),
) -> Image.Image:
    """An RGB sheet with one row per ``(label, images)`` pair.

    Each image may be an array (H x W x 3, H x W x 4 or H x W, uint8), a Pillow image, a path,
    or an ``(image, caption)`` tuple. Thumbnails keep their aspect ratio at ``thumb_height``
    pixels high; captions are wrapped to the thumbnail's width (at most ``caption_lines``
    lines). Without a caption a path is labelled by its file name, otherwise the first image of
    a row is "original" and the others "variation 1", "variation 2", ...
    """
    if thumb_height < 16:
        raise ValueError(f"thumb_height={thumb_height} is too small to show anything; use 16 px or more")
    if gap < 0 or caption_lines < 1:
        raise ValueError("gap must be >= 0 and caption_lines >= 1")
    rows = list(rows)
    if not rows:
        raise ValueError("no rows: pass a sequence of (label, images) pairs, one per original")
    cap_font, label_font = _font(caption_size), _font(label_size)
    rendered = [_layout_row(r, row, cap_font, thumb_height, caption_lines) for r, row in enumerate(rows)]
    return _render(rendered, cap_font, label_font, thumb_height=thumb_height, gap=gap, caption_lines=caption_lines,
                   background=background, text_color=text_color)


def _layout_row(r: int, row, cap_font, thumb_height: int, caption_lines: int) -> tuple[str, list]:
    """(label, [(thumbnail, caption lines)]) of row ``r``."""
    try:
        label, images = row
    except (TypeError, ValueError):
        raise ValueError(f"row {r} is not a (label, images) pair") from None
    cells = []
    for i, item in enumerate(images):
        image, caption = _split_caption(item)
        if caption is None:
            caption = (Path(image).name if isinstance(image, (str, Path))
                       else "original" if i == 0 else f"variation {i}")
        thumb = _thumbnail(_to_rgb(image, where=f"row {r} ({label!r}), image {i}"), thumb_height)
        cells.append((thumb, _wrap(str(caption), cap_font, thumb.width, caption_lines)))
    return str(label), cells


def _render(rendered: list, cap_font, label_font, *, thumb_height: int, gap: int, caption_lines: int,
            background, text_color) -> Image.Image:
    """The sheet: each row's label, then its thumbnails side by side with their captions."""
    cap_line_h = _line_height(cap_font)
    label_h = _line_height(label_font)

    def row_width(cells):
        return sum(t.width for t, _ in cells) + gap * max(0, len(cells) - 1)

    caption_block = caption_lines * cap_line_h
    row_h = label_h + 4 + thumb_height + 3 + caption_block
    width = gap * 2 + max([row_width(c) for _, c in rendered] + [label_font.getlength(label) for label, _ in rendered])
    height = gap + len(rendered) * (row_h + gap)
    sheet = Image.new("RGB", (int(np.ceil(width)), int(height)), background)
    draw = ImageDraw.Draw(sheet)
    y = gap
    for label, cells in rendered:
        draw.text((gap, y), label, font=label_font, fill=text_color)
        x, ty = gap, y + label_h + 4
        for thumb, lines in cells:
            sheet.paste(thumb, (x, ty))
            for k, line in enumerate(lines):
                draw.text((x, ty + thumb_height + 3 + k * cap_line_h), line, font=cap_font, fill=text_color)
            x += thumb.width + gap
        y += row_h + gap
    return sheet


def _split_caption(item) -> tuple[ImageLike, str | None]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
        return item[0], item[1]
    return item, None


def _to_rgb(image, *, where: str) -> Image.Image:
    if isinstance(image, (str, Path)):
        from varflow.images.imageio import load_rgb

        return load_rgb(image)
    if isinstance(image, Image.Image):
        if image.mode == "RGB":
            return image
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(flat, rgba).convert("RGB")
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"{where}: array of dtype {image.dtype}; convert it to uint8 (0-255) first")
        if image.ndim == 2:
            return Image.fromarray(image, "L").convert("RGB")
        if image.ndim == 3 and image.shape[2] == 3:
            return Image.fromarray(np.ascontiguousarray(image), "RGB")
        if image.ndim == 3 and image.shape[2] == 4:
            return _to_rgb(Image.fromarray(np.ascontiguousarray(image), "RGBA"), where=where)
        raise ValueError(f"{where}: array of shape {image.shape}; expected H x W, H x W x 3 or H x W x 4")
    raise ValueError(f"{where}: {type(image).__name__} is not an image; pass an array, a Pillow image "
                     "or a path, optionally as an (image, caption) tuple")


def _thumbnail(im: Image.Image, height: int) -> Image.Image:
    w = max(1, round(im.width * height / im.height))
    return im.resize((w, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _line_height(font) -> int:
    box = font.getbbox("Ag|")
    return int(box[3]) + 2


def _wrap(text: str, font, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; the last line ends in an ellipsis if text remains."""
    words = text.split()
    lines: list[str] = []
    current, i = "", 0
    while i < len(words) and len(lines) < max_lines:
        candidate = f"{current} {words[i]}".strip()
        if font.getlength(candidate) <= width:
            current, i = candidate, i + 1
        elif not current:  # one word wider than the thumbnail
            lines.append(_ellipsis(words[i], font, width))
            i += 1
        else:
            lines.append(current)
            current = ""
    if current and len(lines) < max_lines:
        lines.append(current)
        current = ""
    if (current or i < len(words)) and lines and not lines[-1].endswith("…"):
        lines[-1] = _ellipsis(lines[-1], font, width, always=True)
    return lines


def _ellipsis(text: str, font, width: int, *, always: bool = False) -> str:
    """``text`` shortened to fit ``width`` with a trailing ellipsis (``always``: even if it fits)."""
    if not always and font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"
