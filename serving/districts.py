"""Districts from a list: the names in ``static/districts.json`` (what the farmer page offers), matched however
they are typed (NFC or NFD, case, spacing, diacritics, invisible characters), and the nearest one to a point.

A district decides which officer sees a report: "Phú Tân" in NFD, "phu tan" or one with a zero-width space used
to be stored as sent and reached no officer.
"""

from __future__ import annotations

import json
import math
import unicodedata
from functools import lru_cache

from pestid.catalogue import fold
from pestid.serving import STATIC

NEAREST_WITHIN_KM = 25  # as the farmer page's GPS button


@lru_cache(maxsize=1)
def districts() -> list[dict[str, float | str]]:
    return list(json.loads((STATIC / "districts.json").read_text(encoding="utf-8"))["districts"])


def _key(text: str) -> str:
    visible = "".join(c for c in unicodedata.normalize("NFC", text) if unicodedata.category(c) not in ("Cf", "Cc"))
    return fold(visible)


@lru_cache(maxsize=1)
def _by_key() -> dict[str, str]:
    return {_key(str(d["name"])): str(d["name"]) for d in districts()}


def canonical_district(text: str) -> str | None:
    """The listed name ``text`` means, or None when it names no listed district."""
    return _by_key().get(_key(text))


def nearest_district(latitude: float, longitude: float) -> str | None:
    """The listed district whose centre is nearest, if within ``NEAREST_WITHIN_KM``."""
    best, best_km = None, float("inf")
    for d in districts():
        dy = (float(d["lat"]) - latitude) * 111.0
        dx = (float(d["lon"]) - longitude) * 111.0 * math.cos(math.radians(latitude))
        km = math.hypot(dx, dy)
        if km < best_km:
            best, best_km = str(d["name"]), km
    return best if best_km <= NEAREST_WITHIN_KM else None
