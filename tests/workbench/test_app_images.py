"""Upload robustness: every bad or unusual file gets a readable refusal or a noted conversion."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from workbench.io.images import (ImageInputError, center_crop_resize, image_digest, image_to_tensor, load_image,
                              prepare_image, tensor_to_uint8)


@pytest.mark.parametrize("kind, message", [
    ("not_image", "not an image"),
    ("truncated", "truncated or corrupt"),
    ("huge", "too large"),
    ("bomb", "too large"),
])
def test_refused_uploads_say_why(bad_images, kind, message):
    with pytest.raises(ImageInputError, match=message) as err:
        load_image(bad_images[kind])
    assert bad_images[kind].name in str(err.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageInputError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_cmyk_is_converted_with_a_note(bad_images):
    loaded = load_image(bad_images["cmyk"])
    assert loaded.source_mode == "CMYK" and loaded.image.mode == "RGB"
    assert loaded.image.size == (60, 40)
    assert any("CMYK" in n for n in loaded.notes)


def test_16_bit_is_scaled_not_clipped(bad_images):
    loaded = load_image(bad_images["deep16"])
    arr = np.asarray(loaded.image)
    # 16383 / 65535 * 255 = 63.75 -> 64 in every channel (PIL's own convert would clip to 255)
    assert arr.shape == (32, 32, 3) and np.all(arr == 64)
    assert any("bit-depth" in n for n in loaded.notes)


def test_animated_uses_first_frame(bad_images):
    loaded = load_image(bad_images["animated"])
    assert tuple(np.asarray(loaded.image)[0, 0]) == (255, 0, 0)
    assert any("3 frames" in n for n in loaded.notes)


def test_alpha_is_composited_on_white(bad_images):
    loaded = load_image(bad_images["alpha"])
    arr = np.asarray(loaded.image)
    assert tuple(arr[0, 0]) == (200, 0, 0)  # opaque red stays
    assert tuple(arr[15, 0]) == (255, 255, 255)  # transparent becomes white
    assert any("transparent" in n for n in loaded.notes)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (30, 10), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.image.size == (10, 30)
    assert any("EXIF" in n for n in loaded.notes)


def test_oversized_byte_count_is_refused(monkeypatch, tmp_path):
    import workbench.io.images as images

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    Image.new("RGB", (64, 64)).save(tmp_path / "a.bmp")
    with pytest.raises(ImageInputError, match="larger than"):
        load_image(tmp_path / "a.bmp")


def test_centre_crop_keeps_the_middle():
    arr = np.zeros((40, 80, 3), dtype=np.uint8)
    arr[:, 20:60] = 255  # a white square in the middle of a black band
    out = center_crop_resize(Image.fromarray(arr), 20)
    assert out.size == (20, 20)
    pixels = np.asarray(out)
    assert pixels[:, 1:-1].min() == 255  # only the middle square survives ...
    assert pixels[:, [0, -1]].min() > 200  # ... up to bicubic ringing from the black just outside


def test_preprocessing_matches_the_analysis_protocol():
    from analysis.data import resize_center_crop

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8))
    ours = image_to_tensor(center_crop_resize(img, 32))[0]
    assert float((ours - resize_center_crop(img, 32)).abs().max()) == 0.0


def test_prepare_records_resize_and_tensor_round_trip(bad_images):
    loaded = prepare_image(bad_images["cmyk"], 16)
    assert loaded.image.size == (16, 16) and loaded.resized_from == (60, 40)
    assert "centre-cropped and resized to 16 x 16" in loaded.describe()
    t = image_to_tensor(loaded.image)
    assert t.shape == (1, 3, 16, 16) and 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert np.array_equal(tensor_to_uint8(t)[0], np.asarray(loaded.image))


def test_digest_depends_on_pixels_only(tmp_path):
    a = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    a.save(tmp_path / "a.png")
    a.save(tmp_path / "a.bmp")
    assert image_digest(load_image(tmp_path / "a.png").image) == image_digest(load_image(tmp_path / "a.bmp").image)
    b = a.copy()
    b.putpixel((0, 0), (1, 2, 4))
    assert image_digest(a) != image_digest(b)
