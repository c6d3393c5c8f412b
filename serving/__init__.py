"""Serving: the identification API and the farmer's web page."""

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"  # the pages, their scripts and districts.json
