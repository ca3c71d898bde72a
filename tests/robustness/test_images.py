"""Hostile image files through the library (``workbench.io.images``) and through the running app.

Each file is either decoded to the right pixels or refused with a message that says why; memory
stays bounded for decompression bombs; the server keeps serving afterwards.
"""
from __future__ import annotations

import io

import numpy as np
import pytest

from tests.app_fixtures import named
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.robustness.conftest import peak_rss_delta_mb
from tests.robustness.hostile_images import Case, bomb_within_limits, build_corpus, png_with_header
from workbench.io.images import ImageInputError, image_digest, image_to_tensor, load_image, prepare_image

CORPUS = build_corpus()
REFUSED = [c for c in CORPUS if c.refusal]
ACCEPTED = [c for c in CORPUS if not c.refusal]
# Bounds for the memory tests (MB of peak resident memory above the level before the call).
HEADER_BOMB_MB = 16  # refused from the header: no pixel buffer may be allocated
ACCEPTED_BOMB_MB = 300  # a 6000 x 6000 image in 4 kB (36 MP: 1-bit decode, RGB convert, resize); measured ~140
RGBA_36MP_MB = 400  # a 6000 x 6000 RGBA upload; measured 309 (690 before compositing through a mask)


def _write(case: Case, folder) -> str:
    path = folder / case.name
    path.write_bytes(case.data)
    return str(path)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["file", "bytes"])
def test_library_decodes_or_refuses_each_file(case: Case, as_bytes: bool, tmp_path, tally):
    source = case.data if as_bytes else _write(case, tmp_path)
    tally.input("images (library)")
    if case.refusal:
        expected = "not an image" if (as_bytes and case.data == b"") else case.refusal
        with pytest.raises(ImageInputError, match=expected) as err:
            prepare_image(source, 64, case.name)
        assert case.name in str(err.value)  # the message names the upload
        return
    loaded = load_image(source, case.name)
    assert loaded.image.mode == "RGB" and loaded.image.size == case.size
    case.check(np.asarray(loaded.image))
    prepared = prepare_image(source, 64, case.name)
    tensor = image_to_tensor(prepared.image)
    assert tensor.shape == (1, 3, 64, 64) and bool(tensor.isfinite().all())
    assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0


def test_conversions_are_reported_to_the_user():
    notes = {c.name: " ".join(load_image(c.data, c.name).notes) for c in ACCEPTED}
    assert "CMYK" in notes["cmyk.jpg"]
    assert "bit-depth" in notes["grey16.png"] and "float" in notes["float32.tiff"]
    assert "3 frames" in notes["animated.gif"] and "2 frames" in notes["multipage.tiff"]
    assert "EXIF" in notes["exif_rotated.jpg"]
    assert "transparent" in notes["palette_transparent.png"] and "transparent" in notes["rgba_half_transparent.png"]
    assert notes["plain.png"] == "" and notes["png_named.jpg"] == ""


def test_header_bombs_are_refused_before_any_pixel_is_allocated(tally):
    bombs = [c for c in REFUSED if "too large" in c.refusal]
    assert len(bombs) == 4

    def refuse_all() -> None:
        for case in bombs:
            with pytest.raises(ImageInputError, match="too large"):
                prepare_image(case.data, 64, case.name)

    used = peak_rss_delta_mb(refuse_all)
    tally.input("images (memory)", len(bombs))
    assert used < HEADER_BOMB_MB, f"refusing {len(bombs)} header bombs peaked at {used:.0f} MB"


def test_largest_accepted_bomb_stays_within_its_memory_bound(tally):
    data = bomb_within_limits()
    assert len(data) < 10_000  # 36 megapixels in a few kB
    result = {}
    used = peak_rss_delta_mb(lambda: result.setdefault("img", prepare_image(data, 64, "bomb.png")))
    tally.input("images (memory)")
    assert np.asarray(result["img"].image).max() == 0  # all black, decoded fully
    assert used < ACCEPTED_BOMB_MB, f"a 6000x6000 bomb peaked at {used:.0f} MB"


def test_large_transparent_upload_is_composited_within_its_memory_bound(tally):
    """36 MP RGBA: the decoded RGBA (144 MB) + an RGB canvas + the alpha plane, nothing more."""
    pixels = np.zeros((6000, 6000, 4), np.uint8)
    pixels[..., 0], pixels[..., 3] = 200, 128  # half-transparent dark red over white
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG", compress_level=1)
    del pixels
    result = {}
    used = peak_rss_delta_mb(lambda: result.setdefault("img", prepare_image(buffer.getvalue(), 64, "big.png")))
    tally.input("images (memory)")
    # 200 * 128/255 + 255 * 127/255 = 227.4; 0 * 128/255 + 255 * 127/255 = 127
    assert tuple(np.asarray(result["img"].image)[32, 32]) == (227, 127, 127)
    assert result["img"].notes == ["transparent areas composited onto white"]
    assert used < RGBA_36MP_MB, f"a 6000x6000 RGBA upload peaked at {used:.0f} MB"


def test_header_claiming_one_pixel_more_than_the_limit_is_refused(tally):
    from workbench.io.images import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5) + 1
    tally.input("images (library)")
    with pytest.raises(ImageInputError, match="too large"):
        load_image(png_with_header(side, side), "edge.png")


# -- through the running app -------------------------------------------------------------------------

def _upload(client, path: str, steps: int = 2):
    return client.predict(handle_file(path), "default", steps, 1.0, 0, "confidence", api_name="/reconstruct_upload")


def _sample_still_works(client) -> None:
    out = client.predict("chelsea", "default", 4, 1.0, 0, "confidence", api_name="/reconstruct_sample")
    assert "<b>Step 4 / 4</b>" in named(out)["scrubber"]  # the scrubber opens on the last step


def test_app_refuses_or_decodes_every_hostile_upload(client, served_app, tmp_path, tally):
    ctx = served_app[0]
    decodes_before = ctx.service.decodes
    outcomes = {}
    for case in CORPUS:
        path = _write(case, tmp_path)
        tally.input("images (app)")
        try:
            status = _upload(client, path)[1]
            outcomes[case.name] = ("ok", status)
        except AppError as err:
            outcomes[case.name] = ("refused", str(err))
    wrong = {}
    for case in CORPUS:
        kind, text = outcomes[case.name]
        if case.refusal:
            if kind != "refused" or case.refusal not in text:
                wrong[case.name] = outcomes[case.name]
        elif kind != "ok" or "{} x {}".format(*case.reported_size) not in text:
            wrong[case.name] = outcomes[case.name]
    assert not wrong, wrong
    # every accepted upload was decoded; uploads with identical pixels share one decode (the cache)
    distinct = {image_digest(prepare_image(c.data, 64, c.name).image) for c in ACCEPTED}
    assert ctx.service.decodes - decodes_before == len(distinct) >= 12
    _sample_still_works(client)


def test_app_memory_is_bounded_for_bombs_and_the_server_stays_up(client, tmp_path, tally):
    header_bomb = tmp_path / "header_20000x20000.png"
    header_bomb.write_bytes(png_with_header(20000, 20000))
    bomb = tmp_path / "bomb_6000.png"
    bomb.write_bytes(bomb_within_limits())

    def refused() -> None:
        with pytest.raises(AppError, match="too large"):
            _upload(client, str(header_bomb))

    # the server runs in this process, so its peak memory is ours
    used_refused = peak_rss_delta_mb(refused)
    used_accepted = peak_rss_delta_mb(lambda: _upload(client, str(bomb)))
    tally.input("images (memory)", 2)
    assert used_refused < HEADER_BOMB_MB + 16, used_refused  # + request handling
    assert used_accepted < ACCEPTED_BOMB_MB + 50, used_accepted
    _sample_still_works(client)


def test_app_survives_an_upload_that_is_not_a_file_it_can_use(client, tmp_path, tally):
    """A real image with a misleading extension and a huge but valid PNG are handled by content."""
    odd = tmp_path / "photo.txt"
    buf = io.BytesIO()
    Image.new("RGB", (50, 30), (1, 2, 3)).save(buf, "PNG")
    odd.write_bytes(buf.getvalue())
    tally.input("images (app)")
    status = _upload(client, str(odd))[1]
    assert "50 x 30 RGB PNG" in status
    _sample_still_works(client)
