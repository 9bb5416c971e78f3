import numpy as np
import pytest
from conftest import FIXTURES, skimage_photo
from PIL import Image

from varflow.images.imageio import (
    ImageReadError,
    fit_within,
    load_rgb,
    optimize_image,
    sha256_file,
    upright_size,
)
from varflow.settings import LoadLimits

BAD = {
    "zero-bytes.jpg": "is empty (0 bytes)",
    "not-an-image.png": "is not an image Pillow can read",
    "truncated.png": "is truncated or corrupt",
    "truncated.jpg": "is truncated or corrupt",
    "bomb.png": "above the 100 MP limit",
    "tiny-4px.png": "needs at least 7x7 pixels",
}


@pytest.mark.parametrize("name, problem", sorted(BAD.items()))
def test_bad_files_raise_an_error_naming_the_file_and_the_fix(name, problem):
    path = FIXTURES / "bad" / name
    with pytest.raises(ImageReadError) as info:
        load_rgb(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert problem in message
    assert info.value.fix  # says what to do


def test_missing_file_is_an_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="cannot be read"):
        load_rgb(tmp_path / "nope.png")


def test_exif_orientation_is_applied():
    im = load_rgb(FIXTURES / "good" / "exif-rotate-6.jpg")
    assert im.size == (300, 451)  # stored 451x300, displayed rotated
    assert upright_size(FIXTURES / "good" / "exif-rotate-6.jpg") == (300, 451)


def test_alpha_is_flattened_on_white():
    im = np.asarray(load_rgb(FIXTURES / "good" / "half-transparent.png"))
    assert im.shape == (300, 451, 3)
    assert (im[:, :200] == 255).all()  # transparent half
    assert im[:, 300:].std() > 10  # opaque half keeps the photo


@pytest.mark.parametrize("name", ["grey.png", "cmyk.jpg", "grey-16bit.png"])
def test_modes_are_normalised_to_rgb(name):
    im = load_rgb(FIXTURES / "good" / name)
    assert im.mode == "RGB" and im.size == (451, 300)


def test_16bit_grey_keeps_its_tones():
    a = np.asarray(load_rgb(FIXTURES / "good" / "grey-16bit.png"))[:, :, 0].astype(int)
    b = np.asarray(load_rgb(FIXTURES / "good" / "grey.png"))[:, :, 0].astype(int)
    assert np.abs(a - b).max() <= 1


def test_pixel_limit_is_configurable():
    with pytest.raises(ImageReadError, match="above the 0 MP limit"):
        load_rgb(skimage_photo("astronaut.png"), limits=LoadLimits(max_pixels=100_000))


def test_fit_within_is_proportional_and_never_upscales():
    assert fit_within(3000, 2000, 1536) == (1536, 1024)
    assert fit_within(2000, 3000, 1024) == (683, 1024)
    assert fit_within(512, 512, 2048) == (512, 512)


def test_optimize_resizes_to_the_level_and_keeps_identity(tmp_path):
    src = skimage_photo("hubble_deep_field.jpg")  # 1000 x 872
    out = optimize_image(src, tmp_path / "o.png", max_side=500)
    assert (out.width, out.height) == (1000, 872)
    assert (out.optimized_width, out.optimized_height) == (500, 436)
    assert out.image_id == sha256_file(src)
    with Image.open(out.optimized_path) as im:
        assert im.size == (500, 436) and im.mode == "RGB"
    same = optimize_image(src, tmp_path / "p.png", max_side=4096)
    assert (same.optimized_width, same.optimized_height) == (1000, 872)


def test_optimize_leaves_no_temp_files_on_failure(tmp_path):
    with pytest.raises(ImageReadError):
        optimize_image(FIXTURES / "bad" / "truncated.png", tmp_path / "out" / "o.png", max_side=512)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
