import os

import pytest

from varflow.processing.discovery import discover_images


def touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_walks_recursively_in_a_stable_order_skipping_hidden(tmp_path):
    for rel in ["b.JPG", "a.png", "sub/z.webp", "sub/deeper/c.tiff", ".hidden.png", ".cache/x.png", "notes.txt"]:
        touch(tmp_path / rel)
    found = [p.relative_to(tmp_path).as_posix() for p in discover_images(tmp_path)]
    assert found == ["a.png", "b.JPG", "sub/z.webp", "sub/deeper/c.tiff"]


def test_extensions_are_configurable(tmp_path):
    touch(tmp_path / "a.png")
    touch(tmp_path / "b.jpg")
    assert [p.name for p in discover_images(tmp_path, extensions=["JPG"])] == ["b.jpg"]
    with pytest.raises(ValueError, match="no image extensions"):
        discover_images(tmp_path, extensions=[""])


def test_symlink_loops_are_skipped_and_excluded_folders_not_entered(tmp_path):
    touch(tmp_path / "in" / "a.png")
    os.symlink(tmp_path / "in", tmp_path / "in" / "loop")
    touch(tmp_path / "in" / "out" / "a-v01.png")
    found = discover_images(tmp_path / "in", exclude=[tmp_path / "in" / "out"])
    assert [p.name for p in found] == ["a.png"]


def test_missing_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_images(tmp_path / "nope")
