"""Receipts: how a farmer's phone, and only it, hears back about a submission.

Creating a submission returns a receipt token: an HMAC of the submission id under a key the service keeps in
its database. It cannot be guessed from the id, needs no column of its own, and a retry with the same
idempotency key gets the same token back (a cut connection loses nothing). ``GET /v1/submissions/{id}``
answers only with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pestid.serving.db import ServiceSecret

SECRET_NAME = "receipt_key"


def receipt_key(sessions: sessionmaker) -> bytes:
    """The signing key, made on first use; concurrent first starts agree on whichever row was stored first."""
    with sessions() as session:
        row = session.get(ServiceSecret, SECRET_NAME)
        if row is None:
            session.add(ServiceSecret(name=SECRET_NAME, value=secrets.token_hex(32)))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
            row = session.get(ServiceSecret, SECRET_NAME)
        assert row is not None
        return bytes.fromhex(row.value)


def receipt_for(key: bytes, submission_id: str) -> str:
    digest = hmac.new(key, submission_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def receipt_matches(key: bytes, submission_id: str, token: str | None) -> bool:
    """A header is read as ASCII: any other receipt is simply wrong (compare_digest refuses non-ASCII text)."""
    return token is not None and token.isascii() and hmac.compare_digest(receipt_for(key, submission_id), token.strip())
