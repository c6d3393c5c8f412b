"""Work a worker repeats in the background while it serves: re-resolving the model alias, refreshing field truth."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from pestid.serving.observability import log


async def _repeat(step: Callable[[], Awaitable[object]], interval: float, at_start: bool, failed: str) -> None:
    if not at_start:
        await asyncio.sleep(interval)
    while True:
        try:
            await step()
        except Exception:  # noqa: BLE001 - keep serving; the next round tries again
            log.exception(failed)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def repeating(step: Callable[[], Awaitable[object]], interval: float, *, at_start: bool,
                    failed: str) -> AsyncIterator[None]:  # fmt: skip
    """Run ``step`` every ``interval`` seconds (first at once with ``at_start``, else after one interval) for as
    long as the block runs, logging ``failed`` when a round raises; ``interval`` 0 or less runs nothing."""
    task = asyncio.create_task(_repeat(step, interval, at_start, failed)) if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
