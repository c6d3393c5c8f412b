import io
import resource
import time

import pytest
from PIL import Image

from pestid.errors import ImageDecodeError
from pestid.imaging import decode_image, read_image
from tests.conftest import exif_rotated_jpeg, heic_bytes, jpeg_bytes, photo, png_bomb


def _code(data: bytes, **kw) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, **kw)
    return info.value.code


def test_jpeg_decodes_to_rgb():
    image = decode_image(jpeg_bytes(photo()))
    assert image.mode == "RGB" and image.size == (96, 96)


def test_exif_orientation_is_applied():
    image = decode_image(exif_rotated_jpeg())
    assert image.size == (60, 30)  # stored 30×60, shown as a landscape


def test_png_with_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    image = decode_image(buffer.getvalue())
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


def test_heic_phone_photo_decodes():
    image = decode_image(heic_bytes(photo(size=64)))
    assert image.mode == "RGB" and image.size == (64, 64)


def test_webp_decodes():
    buffer = io.BytesIO()
    photo(size=40).save(buffer, format="WEBP")
    assert decode_image(buffer.getvalue()).size == (40, 40)


def test_empty_file_is_refused():
    assert _code(b"") == "empty"


def test_non_image_is_refused():
    assert _code(b"%PDF-1.4 this is a document") == "not_an_image"


def test_truncated_jpeg_is_refused():
    assert _code(jpeg_bytes(photo())[:800]) == "truncated"


def test_corrupt_bytes_after_a_jpeg_header_are_refused():
    assert _code(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8) in {"corrupt", "truncated"}


def test_upload_rejects_decompression_bomb_without_decoding_it():
    bomb = png_bomb()
    assert len(bomb) < 2_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    assert _code(bomb) == "too_many_pixels"
    assert time.perf_counter() - start < 2.0
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200_000  # the 900 MP canvas would need about 900 MB


def test_pixel_limit_is_configurable():
    assert _code(jpeg_bytes(photo(size=96)), max_pixels=90 * 90) == "too_many_pixels"


def test_error_message_is_one_sentence_in_vietnamese_then_english():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(b"")
    assert str(info.value) == "Tệp rỗng. / The file is empty."


def test_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(ImageDecodeError) as info:
        read_image(tmp_path / "nope.jpg")
    assert info.value.code == "unreadable"


def test_decoded_image_reports_the_file_format():
    assert decode_image(jpeg_bytes(photo())).format == "JPEG"
    assert decode_image(exif_rotated_jpeg()).format == "JPEG"  # rotated: a new image, same format
    assert decode_image(heic_bytes(photo(size=32))).format == "HEIF"
