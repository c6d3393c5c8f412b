"""Per-client limits on photo uploads, with the ``limits`` library (moving windows).

Two keys per upload: the sending address, and the farmer page's device key (a random id it keeps, sent as
``Device-Key``). Many farmers share one mobile carrier's address, so the address limit is the looser one. The
counts live in ``PESTID_RATE_LIMIT_STORAGE``: ``memory://`` (the default) counts per worker process; behind
several replicas, count in nginx (``limit_req`` in ``deploy/``) or in a shared store the library supports
(``redis://…``, ``memcached://…``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

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


class FairSlots:
    """The decode slots, handed out fairly: a freed slot goes to the waiting client holding the fewest slots, the
    earliest of them first, and one client holds at most ``per_client`` at a time. A plain semaphore let a request
    with five 62 MP HEICs take its slot back for each next photo before a farmer's waiting request woke up."""

    def __init__(self, total: int, per_client: int) -> None:
        self.free = max(1, total)
        self.per_client = max(1, per_client)
        self.held: Counter[str] = Counter()
        self.waiting: list[tuple[str, int]] = []
        self.tickets = itertools.count()
        self.turn = threading.Condition()

    def _next(self) -> tuple[str, int] | None:
        allowed = [w for w in self.waiting if self.held[w[0]] < self.per_client]
        return min(allowed, key=lambda w: (self.held[w[0]], w[1])) if allowed else None

    @contextmanager
    def __call__(self, client: str) -> Iterator[None]:
        with self.turn:
            mine = (client, next(self.tickets))
            self.waiting.append(mine)
            while not (self.free > 0 and self._next() == mine):
                self.turn.wait()
            self.waiting.remove(mine)
            self.free -= 1
            self.held[client] += 1
        try:
            yield
        finally:
            with self.turn:
                self.free += 1
                self.held[client] -= 1
                if not self.held[client]:
                    del self.held[client]
                self.turn.notify_all()


class InFlight:
    """Uploads being handled now, per address (one worker's event loop, so no lock): past the cap, 429. Waiting
    uploads hold worker threads, and one address must not hold them all."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self.now: Counter[str] = Counter()

    @contextmanager
    def enter(self, address: str) -> Iterator[bool]:
        """Yields whether this upload may go ahead."""
        if self.now[address] >= self.per_address:
            yield False
            return
        self.now[address] += 1
        try:
            yield True
        finally:
            self.now[address] -= 1
            if not self.now[address]:
                del self.now[address]


# The environment a load benchmark gives `pestid serve`: it measures the service, not its per-client limits.
LOAD_TEST_ENV = {
    "PESTID_UPLOAD_RATE_PER_ADDRESS": "1000000/second",
    "PESTID_UPLOAD_RATE_PER_DEVICE": "1000000/second",
    "PESTID_UPLOADS_AT_ONCE_PER_ADDRESS": "100000",
}
