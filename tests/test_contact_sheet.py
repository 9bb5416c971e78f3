"""Contact sheets: one row per original, thumbnails at a fixed height, captions underneath."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_photo
from PIL import Image

from varflow.reports.contact_sheet import make_contact_sheet

BG = (250, 250, 248)


def _colour(rgb, w=40, h=20):
    return np.full((h, w, 3), rgb, np.uint8)


def test_layout_rows_thumbnails_and_aspect(tmp_path):
    path = tmp_path / "blue.png"
    Image.fromarray(_colour((0, 0, 255), 30, 30)).save(path)
    rows = [
        ("first", [_colour((255, 0, 0)), Image.fromarray(_colour((0, 255, 0), 20, 20))]),
        ("second", [path, (_colour((0, 0, 0), 10, 20), "caption")]),
    ]
    sheet = make_contact_sheet(rows, thumb_height=50, gap=8)
    assert sheet.mode == "RGB"
    a = np.asarray(sheet).astype(int)

    def box_of(rgb):
        ys, xs = np.nonzero(np.abs(a - rgb).sum(-1) < 30)
        return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1

    rx, ry, rw, rh = box_of((255, 0, 0))
    gx, gy, gw, gh = box_of((0, 255, 0))
    bx, by, bw, bh = box_of((0, 0, 255))
    assert (rw, rh) == (100, 50) and (gw, gh) == (50, 50)  # 2:1 and 1:1 kept at 50 px high
    assert ry == gy and gx == rx + rw + 8  # one row, left to right, gap between
    assert bh == 50 and by > ry + 50  # the second row is below the first, captions between
    assert bx == rx  # rows start at the same margin
    # the sheet is as wide as its widest row plus margins
    assert sheet.width == 8 + 100 + 8 + 50 + 8


def test_captions_are_drawn_under_each_thumbnail():
    img = load_photo("coffee.png")[::4, ::4]
    plain = np.asarray(make_contact_sheet([("r", [(img, "")])], thumb_height=60)).astype(int)
    labelled = np.asarray(make_contact_sheet([("r", [(img, "a caption under it")])], thumb_height=60)).astype(int)
    assert plain.shape == labelled.shape
    diff = np.nonzero(np.abs(plain - labelled).sum(-1))
    ys = diff[0]
    assert len(ys) > 20  # text pixels
    thumb_top = np.nonzero(np.abs(plain - BG).sum(-1) > 30)[0].min()
    assert ys.min() > thumb_top + 60  # below the thumbnail, never over it


def test_default_captions_name_files_and_originals(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(_colour((9, 9, 9))).save(path)
    default = np.asarray(make_contact_sheet([("r", [path, _colour((5, 5, 5))])], thumb_height=40))
    named = np.asarray(make_contact_sheet([("r", [(path, "x.png"), (_colour((5, 5, 5)), "variation 1")])],
                                          thumb_height=40))
    swapped = np.asarray(make_contact_sheet([("r", [(path, "variation 1"), (_colour((5, 5, 5)), "x.png")])],
                                            thumb_height=40))
    assert np.array_equal(default, named) and not np.array_equal(default, swapped)
    first = np.asarray(make_contact_sheet([("r", [_colour((5, 5, 5))])], thumb_height=40))
    assert np.array_equal(first, np.asarray(make_contact_sheet([("r", [(_colour((5, 5, 5)), "original")])],
                                                               thumb_height=40)))


def test_rgba_is_shown_on_white_and_grey_as_grey():
    rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent black
    grey = np.full((20, 20), 77, np.uint8)
    a = np.asarray(make_contact_sheet([("r", [rgba, grey])], thumb_height=20, gap=4)).astype(int)
    row_top = np.nonzero((a == 77).all(-1))[0].min()
    assert (a[row_top:row_top + 20, 4:24] == 255).all()  # transparent -> white
    assert (a[row_top:row_top + 20, 28:48] == 77).all()


def test_bad_input_says_how_to_fix_it():
    with pytest.raises(ValueError, match="no rows"):
        make_contact_sheet([])
    with pytest.raises(ValueError, match="uint8"):
        make_contact_sheet([("r", [np.zeros((5, 5, 3), np.float32)])])
    with pytest.raises(ValueError, match="not an image"):
        make_contact_sheet([("r", [42])])
    with pytest.raises(ValueError, match="thumb_height"):
        make_contact_sheet([("r", [_colour((1, 2, 3))])], thumb_height=4)
