"""Reading images safely and writing them atomically.

Every failure becomes an ``ImageReadError`` that names the file, says what is wrong and what to
do, so a run can record it and go on with the other images.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from varflow.errors import InputError
from varflow.images.inputs import kind_of, open_regular
from varflow.quality.metrics import GreyImage
from varflow.quality.pixels import flatten_to_rgb as _flatten_to_rgb
from varflow.quality.pixels import upright as _upright
from varflow.safety.filemodes import follow_umask
from varflow.settings import LoadLimits

_HASH_CHUNK = 1 << 20

# Pillow warns on the console about damaged EXIF tags it skips; the image still decodes and its
# orientation reads as upright, so the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message=r"(Possibly corrupt EXIF|Corrupt EXIF|Tag data larger than file)",
                        category=UserWarning)


class ImageReadError(InputError):
    """An input image that cannot be used; ``str()`` is the message recorded in ``images.error``."""

    def __init__(self, path: str | Path, problem: str, fix: str):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}; {fix}")


def sha256_file(path: str | Path) -> str:
    """The image's identity: SHA-256 of its bytes (renames and copies keep it, edits change it)."""
    h = hashlib.sha256()
    with open_regular(path) as f:  # a FIFO or device raises instead of blocking
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check_file(path: Path, limits: LoadLimits) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror})", "check the path and permissions") from None
    if not stat.S_ISREG(path.stat().st_mode):
        raise ImageReadError(path, f"is {kind_of(path.stat().st_mode)}, not a regular file",
                             "replace it with the image file or remove it")
    if size == 0:
        raise ImageReadError(path, "is empty (0 bytes)", "re-export or re-copy the file, or remove it")
    if size > limits.max_file_bytes:
        raise ImageReadError(
            path,
            f"is {size / 2**20:.0f} MiB, above the {limits.max_file_bytes / 2**20:.0f} MiB limit",
            "downscale it first or raise LoadLimits.max_file_bytes",
        )


def upright_size(path: str | Path) -> tuple[int, int] | None:
    """The header's size after EXIF orientation (5-8 swap width and height), without decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                try:
                    orientation = im.getexif().get(0x0112, 1)
                except Exception:
                    orientation = 1
    except Exception:
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def load_rgb(path: str | Path, *, limits: LoadLimits = LoadLimits(), max_side: int | None = None) -> Image.Image:
    """Decode ``path`` as upright RGB, refusing decompression bombs before decoding.

    With ``max_side``, JPEGs are decoded at a reduced DCT scale no smaller than needed, which
    bounds the memory a large photo costs; the caller still resizes to the exact size.
    """
    return _flatten_to_rgb(_decode(Path(path), limits, max_side, "RGB"))


def load_small_grey(path: str | Path, *, limits: LoadLimits = LoadLimits(), max_side: int) -> np.ndarray:
    """Upright grey pixels (uint8), a JPEG decoded straight to its luma at a reduced DCT scale:
    no colour conversion or chroma upsampling (copy-finding's features: 0.35 ms less a photo,
    a quarter of its decode). Transparency is composited on white, as ``load_rgb`` does."""
    im = _decode(Path(path), limits, max_side, "L")
    return np.asarray(im if im.mode == "L" else _flatten_to_rgb(im).convert("L"))


def _decode(path: Path, limits: LoadLimits, max_side: int | None, draft_mode: str) -> Image.Image:
    """The upright decoded image, in the mode it decoded to (JPEGs drafted to ``draft_mode``)."""
    _check_file(path, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageReadError(
            path, "is not an image Pillow can read", "convert it to PNG, JPEG, WebP, BMP or TIFF, or remove it"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"is a decompression bomb ({exc})", "remove it") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot be opened ({exc})", "check the file") from None
    try:
        w, h = im.size
        if w * h > limits.max_pixels:
            raise ImageReadError(
                path,
                f"declares {w}x{h} = {w * h / 1e6:.0f} MP, above the {limits.max_pixels / 1e6:.0f} MP limit "
                "(a possible decompression bomb)",
                "downscale it first, or, if it is a real photo, raise the limit "
                "(--max-megapixels, or the run's max_pixels parameter)",
            )
        if max_side and im.format == "JPEG" and max(w, h) > max_side:
            scale = max_side / max(w, h)
            im.draft(draft_mode, (max(1, int(w * scale)), max(1, int(h * scale))))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(
                path, f"is truncated or corrupt ({exc})", "re-export or re-download the file, or remove it"
            ) from None
        upright = _upright(im)
        if upright is im:  # a broken EXIF block: the pixels as they are, kept past im.close()
            upright = im.copy()
        if upright.width < 7 or upright.height < 7:
            raise ImageReadError(
                path, f"is only {upright.width}x{upright.height} px",
                "varflow needs at least 7x7 pixels to score an image"
            )
        return upright
    finally:
        im.close()


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Proportional size with the long side at most ``max_side``; never upscales."""
    if max(width, height) <= max_side:
        return width, height
    if width >= height:
        return max_side, max(1, round(height * max_side / width))
    return max(1, round(width * max_side / height)), max_side


def resize_to_fit(im: Image.Image, max_side: int) -> Image.Image:
    size = fit_within(im.width, im.height, max_side)
    if size == im.size:
        return im
    return im.resize(size, Image.Resampling.LANCZOS)


def save_atomic(im: Image.Image, path: str | Path, *, format: str | None = None, **params) -> Path:
    """Write via a temp file in the same directory and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    try:
        follow_umask(fd)  # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as f:
            im.save(f, format=format or _format_for(path), **params)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(data: bytes, path: str | Path) -> Path:
    """``data`` at ``path`` under a temp name, then renamed (a reader never sees half a file), with the
    mode the umask gives (mkstemp's 0600 would hide it; a forced 0644 would show private photos to all)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        follow_umask(fd)  # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
            ".tiff": "TIFF"}


def _format_for(path: Path) -> str:
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"cannot tell the image format of {path}; use one of {', '.join(_FORMATS)}") from None


@dataclass(frozen=True)
class OptimizedImage:
    image_id: str
    source_path: str
    optimized_path: str
    width: int  # of the source, upright
    height: int
    optimized_width: int
    optimized_height: int
    source_bytes: int


def optimize_image(
    source: str | Path, dest: str | Path, *, max_side: int, limits: LoadLimits = LoadLimits(),
    image_id: str | None = None,
) -> OptimizedImage:
    """The seed's MemoryOptimizer.optimize_image: upright RGB, LANCZOS to ``max_side``, as PNG."""
    source = Path(source)
    image_id = image_id or sha256_file(source)
    rgb = load_rgb(source, limits=limits, max_side=max_side)
    # A JPEG draft decode may be smaller than the file: report the file's upright size.
    width, height = upright_size(source) or rgb.size
    small = resize_to_fit(rgb, max_side)
    save_atomic(small, dest, format="PNG", compress_level=1)
    return OptimizedImage(
        image_id=image_id,
        source_path=str(source),
        optimized_path=str(dest),
        width=width,
        height=height,
        optimized_width=small.width,
        optimized_height=small.height,
        source_bytes=source.stat().st_size,
    )


class _GreyLRU:
    """A byte-bounded LRU of grey images with SSIM statistics, keyed by file identity."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: str | Path):
        st = os.stat(path)
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0]
        with Image.open(path) as im:
            rgb = np.asarray(_flatten_to_rgb(_upright(im)))  # upright, as load_rgb reads it
        grey = GreyImage.from_image(rgb)
        cost = grey.pixels.size * 17  # uint8 + four float32 planes once statistics exist
        with self._lock:
            self._items[key] = (grey, cost)
            self._bytes += cost
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, c) = self._items.popitem(last=False)
                self._bytes -= c
        return grey


    def forget(self, paths=(), *, under: str | Path | None = None) -> None:
        """Drop the entries of ``paths`` and of every file below ``under`` (a finished image's)."""
        drop = {str(p) for p in paths}
        prefix = str(under).rstrip("/") + "/" if under else None
        with self._lock:
            for key in [k for k in self._items if k[0] in drop or (prefix and k[0].startswith(prefix))]:
                _, cost = self._items.pop(key)
                self._bytes -= cost


GREY_CACHE = _GreyLRU(max_bytes=128 * 2**20)


def load_grey(path: str | Path):
    """The grey image (with lazily computed SSIM statistics) of an image file, cached."""
    return GREY_CACHE.get(path)
