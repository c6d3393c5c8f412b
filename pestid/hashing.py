"""Content and perceptual hashes, and the dihedral variants of a perceptual hash.

The perceptual hash is the sign of the 8×8 lowest-frequency DCT coefficients of
a 32×32 grey thumbnail (the DC bit is always 0). Because it is sign-based,
flipping or rotating the image by 90° changes the hash by a fixed bit operation:
a horizontal flip negates odd horizontal frequencies, a transpose swaps the
two axes. So the eight flip/rotation variants of every hash can be computed
from the stored 64-bit value alone, vectorised, without touching pixels again.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

HASH_SIZE = 8
_THUMB = 32


def sha256_bytes(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT = _dct_matrix(_THUMB)[:HASH_SIZE]  # only the low frequencies are needed


def phash(image: Image.Image) -> int:
    """64-bit perceptual hash of a decoded image."""
    grey = image.convert("L").resize((_THUMB, _THUMB), Image.Resampling.BILINEAR)
    pixels = np.asarray(grey, dtype=np.float64)
    coeffs = _DCT @ pixels @ _DCT.T  # (u: vertical, v: horizontal)
    bits = (coeffs > 0).ravel()
    bits[0] = False
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def to_hex(value: int) -> str:
    return f"{value:016x}"


def from_hex(values: list[str] | np.ndarray) -> np.ndarray:
    """Hex strings to a uint64 array."""
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def _bits(hashes: np.ndarray) -> np.ndarray:
    return np.unpackbits(hashes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1).reshape(-1, 8, 8)


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.reshape(-1, 64), axis=1).view(">u8").ravel().astype(np.uint64)


def dihedral_variants(hashes: np.ndarray) -> np.ndarray:
    """(8, N) hashes of each image under the 4 rotations × optional flip."""
    bits = _bits(hashes)  # (N, u, v)
    odd_v = (np.arange(HASH_SIZE) % 2 == 1)[None, None, :]
    odd_u = (np.arange(HASH_SIZE) % 2 == 1)[None, :, None]
    hflip = bits ^ odd_v
    vflip = bits ^ odd_u
    both = bits ^ odd_u ^ odd_v
    forms = [bits, hflip, vflip, both]
    forms += [f.transpose(0, 2, 1) for f in forms]
    return np.stack([_pack(f) for f in forms])


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int8)
