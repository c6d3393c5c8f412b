"""Errors a person can act on: one sentence, Vietnamese first, then English."""

from __future__ import annotations


class PestidError(Exception):
    """Base error. ``str()`` gives the Vietnamese and the English sentence."""

    code = "error"

    def __init__(self, message_vi: str, message_en: str, *, code: str | None = None) -> None:
        self.message_vi = message_vi
        self.message_en = message_en
        if code is not None:
            self.code = code
        super().__init__(f"{message_vi} / {message_en}")


class ImageDecodeError(PestidError):
    """An image that cannot be used: empty, corrupt, truncated, too large, not an image."""

    code = "bad_image"


class CatalogueError(PestidError):
    code = "catalogue"


class DatasetError(PestidError):
    """A dataset definition, folder or manifest that cannot be used."""

    code = "dataset"
