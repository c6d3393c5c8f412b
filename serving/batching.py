"""Micro-batching: concurrent requests share one model run.

Every request's prepared photos go to one inference thread. That thread takes what is
waiting for the same model and runs it as one batch. While other requests are still decoding (their inputs
are on the way), it waits for them, but never longer than ``max_wait_s``. Alone, a request
never waits. One thread owns the model, so concurrent requests no longer fight over the
cores with their own runs. Decoding keeps the other threads busy in the meantime.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import numpy as np

from pestid.predictor import Assessment, Predictor
from pestid.serving import observability as obs

Item = tuple[Predictor, np.ndarray, "Future[Assessment]"]


class MicroBatcher:
    def __init__(self, *, max_wait_s: float, max_batch: int) -> None:
        self.max_wait_s = max_wait_s
        self.max_batch = max_batch
        self.waiting: queue.Queue[Item | None] = queue.Queue()
        self.held: Item | None = None  # taken for a batch of another model (a switch): it starts the next one
        self.arriving = 0  # requests that are decoding now: their inputs will follow
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, name="pestid-inference", daemon=True)
        self.thread.start()

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Around a request's decoding: the inference thread may wait (briefly) for its inputs."""
        with self.lock:
            self.arriving += 1
        try:
            yield
        finally:
            with self.lock:
                self.arriving -= 1

    async def assess(self, predictor: Predictor, inputs: np.ndarray) -> Assessment:
        """``predictor.assess_of(inputs)``, run in a batch with whatever else is ready for it."""
        done: Future[Assessment] = Future()
        self.waiting.put((predictor, inputs, done))
        return await asyncio.wrap_future(done)

    def close(self) -> None:
        self.waiting.put(None)
        self.thread.join(timeout=10)

    def _gather(self, first: Item) -> list[Item]:
        items, size = [first], len(first[1])
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                item = self.waiting.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if self.arriving == 0 or left <= 0:  # nothing more is on its way, or it came too late
                    break
                try:
                    item = self.waiting.get(timeout=min(left, 0.0005))
                except queue.Empty:
                    continue
            if item is None:
                self.waiting.put(None)  # close() once the batch in hand is answered
                break
            if item[0] is not first[0]:
                self.held = item
                break
            items.append(item)
            size += len(item[1])
        return items

    def _next(self) -> Item | None:
        held, self.held = self.held, None
        return held or self.waiting.get()

    def _serve(self) -> None:
        while (first := self._next()) is not None:
            # A request whose client went away was cancelled: it is dropped here. Every other future is marked
            # running, so it can no longer be cancelled and its answer can always be set.
            items = [item for item in self._gather(first) if item[2].set_running_or_notify_cancel()]
            if not items:
                continue
            obs.BATCH_SIZE.observe(sum(len(inputs) for _, inputs, _ in items))
            try:
                assessment = items[0][0].assess_of(np.concatenate([inputs for _, inputs, _ in items]))
            except BaseException as exc:  # noqa: BLE001 - every request of the batch gets the failure
                for _, _, done in items:
                    done.set_exception(exc)
                continue
            start = 0
            for _, inputs, done in items:
                done.set_result(assessment[start : start + len(inputs)])
                start += len(inputs)
