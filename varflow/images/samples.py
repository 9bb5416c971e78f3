"""Sample photos for the demo run, taken from the files scikit-image ships (no download)."""

from __future__ import annotations

import shutil
from pathlib import Path

# Colour photographs among scikit-image's bundled data (public domain or CC0; see its README).
SAMPLE_FILES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
)


def sample_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def sample_paths() -> list[Path]:
    base = sample_dir()
    paths = [base / name for name in SAMPLE_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"scikit-image's bundled sample photos {missing} are missing from {base}; "
            "reinstall scikit-image (pip install --force-reinstall scikit-image)"
        )
    return paths


def export_samples(dest: str | Path) -> list[Path]:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sample_paths():
        target = dest / src.name
        if not target.exists() or target.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, target)
        out.append(target)
    return out
