"""The one image decoder. Nothing else in pestid opens image files.

``decode_image`` reads bytes, refuses what it cannot use with a one-sentence
reason, applies EXIF orientation and returns an RGB ``PIL.Image``. The pixel
limit and the aspect ratio are checked from the header, before any pixel is
decoded, so neither a decompression bomb nor a 1×8000 strip (which the
model's resize would blow up) costs time or memory.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from pestid.errors import ImageDecodeError

try:  # HEIC/HEIF phone photos
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is a core dependency
    HEIF_SUPPORTED = False

DEFAULT_MAX_PIXELS = 64_000_000  # a 50 MP phone photo passes; bombs do not
# Longer side over shorter side. A phone panorama is about 4:1; a 1×8000 strip is no photo of a pest, and
# scaling its shorter side up to the model's input would make a 256×2,048,000 image from 117 bytes.
MAX_ASPECT = 20
REDUCED_DECODE = ("JPEG", "MPO")  # formats decoded at a reduced DCT scale; the others decode every pixel
Image.init()
FORMATS = tuple(f for f in ("JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF", "BMP", "TIFF", "GIF") if f in Image.OPEN)

# Bytes per pixel that decoding and the conversion to RGB hold at their peak, by the file's mode: an RGB photo
# costs 3, an RGBA one 4 to decode plus 3 for the white background it is flattened on. Unknown modes count 8.
DECODE_COST = {"RGB": 3, "YCbCr": 3, "L": 4, "1": 4, "P": 8, "RGBA": 7, "LA": 9, "CMYK": 7, "I;16": 6, "I": 8}

# We enforce our own limit from the header; Pillow's own bomb check would only warn below 2x.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None,
                 max_pixels_full: int | None = None) -> Image.Image:  # fmt: skip
    """Decode image bytes to an upright RGB image, or raise ``ImageDecodeError``.

    The returned image's ``format`` is the file's format (``JPEG``, ``PNG``, ``HEIF``, …), and
    ``info["full_size"]`` its upright size in the file. With ``min_side``, a JPEG is decoded at the smallest
    DCT scale (1/2, 1/4, 1/8) whose shorter side still covers ``min_side``: a 12 MP phone photo bound for a
    256 px resize decodes at 1/4 in a fraction of the time. Other formats (HEIC has no reduced decode) decode in
    full, then are averaged down by the same factor, so that resizing reads 4 to 64 times fewer pixels; with
    ``max_pixels_full``, such a format (no reduced decode) may have at most that many pixels.
    """
    if not data:
        raise ImageDecodeError("Tệp rỗng.", "The file is empty.", code="empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        if _looks_like_image(data):
            raise _corrupt(ValueError("unidentified")) from None
        raise ImageDecodeError(
            "Tệp không phải là ảnh (JPEG, PNG, WebP hoặc HEIC).",
            "The file is not an image (JPEG, PNG, WebP or HEIC).",
            code="not_an_image",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a corrupt file
        raise _corrupt(exc) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("Ảnh không có điểm ảnh nào.", "The image has no pixels.", code="corrupt")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageDecodeError(
            f"Ảnh quá dài hoặc quá hẹp ({width}×{height} điểm ảnh; cạnh dài tối đa gấp {MAX_ASPECT} lần cạnh ngắn).",
            f"The image is too long or too narrow ({width}×{height} pixels; the longer side may be at most "
            f"{MAX_ASPECT} times the shorter).",
            code="extreme_aspect",
        )
    # Work is bounded by what decoding holds, not the file size: at most max_pixels pixels, and no more
    # memory than an RGB image of that many (a 117-byte PNG may ask for gigabytes).
    if width * height > max_pixels or width * height * DECODE_COST.get(image.mode, 8) > 3 * max_pixels:
        raise ImageDecodeError(
            f"Ảnh quá lớn ({width}×{height} điểm ảnh, tối đa {max_pixels:,} điểm ảnh màu RGB).",
            f"The image is too large ({width}×{height} {image.mode} pixels; at most {max_pixels:,} RGB pixels).",
            code="too_many_pixels",
        )
    if max_pixels_full and image.format not in REDUCED_DECODE and width * height > max_pixels_full:
        raise ImageDecodeError(
            f"Ảnh {image.format} quá lớn ({width}×{height}); hãy chọn ảnh tối đa {max_pixels_full // 1_000_000} "
            "megapixel trong cài đặt máy ảnh, hoặc chụp JPEG.",
            f"The {image.format} photo is too large ({width}×{height}); choose at most "
            f"{max_pixels_full // 1_000_000} megapixels in the camera settings, or JPEG.",
            code="too_many_pixels",
        )
    try:
        if min_side and image.format == "JPEG" and min(width, height) >= 2 * min_side:
            scale = min_side / min(width, height)
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        stored = image.size
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: a copy would double a 192 MB decode
        turned = image.size != stored
        rgb = _to_rgb(image)
        if min_side and image.format != "JPEG":  # no reduced decode: average 2×2, 4×4 or 8×8 blocks as DCT scaling does
            factor = max((k for k in (1, 2, 4, 8) if min(rgb.size) >= k * min_side), default=1)
            rgb = rgb.reduce(factor) if factor > 1 else rgb
        rgb.format = image.format  # the source format (JPEG, PNG, HEIF…) survives the conversions
        rgb.info["full_size"] = (height, width) if turned else (width, height)
        return rgb
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _corrupt(exc) from None


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and decode an image file; a missing file is an ``ImageDecodeError`` too."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(
            f"Không đọc được tệp {path}: {exc.strerror}.",
            f"Cannot read {path}: {exc.strerror}.",
            code="unreadable",
        ) from None
    return decode_image(data, max_pixels=max_pixels)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba)  # the alpha band is the mask: no copy of it
        return background
    if image.mode.startswith("I;16") or image.mode == "I":
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def _looks_like_image(data: bytes) -> bool:
    """Known image signatures, so a damaged photo is called corrupt, not 'not an image'."""
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or data[4:8] == b"ftyp"


def _corrupt(exc: Exception) -> ImageDecodeError:
    text = str(exc).lower()
    if "truncated" in text or isinstance(exc, EOFError):
        return ImageDecodeError(
            "Ảnh bị cắt cụt (tệp chưa tải xong).",
            "The image is truncated (the file is incomplete).",
            code="truncated",
        )
    return ImageDecodeError(
        "Ảnh bị hỏng, không giải mã được.",
        "The image is corrupt and cannot be decoded.",
        code="corrupt",
    )


def image_end(data: bytes, fmt: str) -> int:
    """Where a decoded image's own bytes end, from its container's structure: what follows (padding, an
    appended file, a phone's trailer) is not the photo. The whole length when the format does not say (GIF, TIFF,
    BMP) or the structure is not what the decoder accepted; the caller bounds those by their pixels."""
    walk = {"JPEG": _jpeg_end, "MPO": _jpeg_end, "PNG": _png_end, "WEBP": _riff_end, "HEIF": _box_end,
            "AVIF": _box_end}.get(fmt.upper())  # fmt: skip
    end = walk(data) if walk else None
    return end if end is not None and 0 < end <= len(data) else len(data)


def _jpeg_end(data: bytes) -> int | None:
    """Just past the first image's end-of-image marker, walking its segments and the entropy-coded scans."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            return None
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            return None
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # end of image
            return pos
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            continue
        if pos + 2 > n:
            return None
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            return None
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded bytes up to the next marker that is not a restart
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return None
                follower = data[pos + 1]
                if follower == 0x00 or 0xD0 <= follower <= 0xD7:  # a stuffed 0xFF, or a restart marker
                    pos += 2
                elif follower == 0xFF:
                    pos += 1
                else:
                    break
    return None


def _png_end(data: bytes) -> int | None:
    """Just past the IEND chunk."""
    pos, n = 8, len(data)
    while pos + 12 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos if pos <= n else None
    return None


def _riff_end(data: bytes) -> int | None:
    """The RIFF container's declared size (WebP), padded to an even length."""
    if len(data) < 12 or not data.startswith(b"RIFF"):
        return None
    size = 8 + int.from_bytes(data[4:8], "little")
    return size + (size & 1)


def _box_end(data: bytes) -> int | None:
    """Just past the last whole top-level ISO-BMFF box (HEIC, AVIF); a box "to the end of the file" ends there."""
    pos, n = 0, len(data)
    while pos + 8 <= n:
        if not data[pos + 4 : pos + 8].isalnum():  # not a box type ("ftyp", "meta", "mdat"): not part of the file
            break
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size == 0:
            return n
        if size == 1:
            if pos + 16 > n:
                break
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8 or pos + size > n:
            return None  # a box that says it is longer than the file: not what we can trim, kept whole
        pos += size
    return pos or None
