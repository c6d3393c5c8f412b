"""Per-client limits on photo uploads, with the ``limits`` library (moving windows).

Two keys per upload: the sending address, and the farmer page's device key (a random id it keeps, sent as
``Device-Key``). Many farmers share one mobile carrier's address, so the address limit is the looser one. The
counts live in ``PESTID_RATE_LIMIT_STORAGE``: ``memory://`` (the default) counts per worker process; behind
several replicas, count in nginx (``limit_req`` in ``deploy/``) or in a shared store the library supports
(``redis://…``, ``memcached://…``).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many, storage, strategies

DEVICE_KEY_MAX = 64


class UploadLimits:
    def __init__(self, per_address: str, per_device: str, storage_uri: str = "memory://") -> None:
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))
        self.per_address, self.per_device = parse_many(per_address), parse_many(per_device)

    def wait(self, address: str, device: str | None) -> int:
        """Seconds until this client may upload again (0: it may, and this upload is counted)."""
        checks: list[tuple[RateLimitItem, str, str]] = [(item, "address", address) for item in self.per_address]
        if device:
            checks += [(item, "device", device) for item in self.per_device]
        for item, kind, key in checks:
            if not self.limiter.test(item, kind, key):
                reset = self.limiter.get_window_stats(item, kind, key).reset_time
                return max(1, math.ceil(reset - time.time()))
        for item, kind, key in checks:
            self.limiter.hit(item, kind, key)
        return 0


def device_key(header: str | None) -> str | None:
    """The farmer page's device key, if it is a plausible one (printable ASCII, at most 64 characters)."""
    if header and len(header) <= DEVICE_KEY_MAX and header.isascii() and header.isprintable():
        return header
    return None


# The environment a load benchmark gives `pestid serve`: it measures the service, not its per-client limits.
LOAD_TEST_ENV = {"PESTID_UPLOAD_RATE_PER_ADDRESS": "1000000/second", "PESTID_UPLOAD_RATE_PER_DEVICE": "1000000/second"}
