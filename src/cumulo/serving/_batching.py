"""Dynamic batching: many concurrent single-item calls become one call with lists."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("cumulo.serving")


class BatchSizeError(RuntimeError):
    pass


class Batcher:
    """Groups items submitted concurrently and runs `run_batch(items) -> results` on each group.

    A group is dispatched when it holds `max_size` items or when its oldest item has waited
    `max_wait_s`. One group runs at a time; the next one fills while it runs. Items whose caller
    gave up (cancelled, e.g. on timeout) before dispatch are dropped from the group.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Awaitable[list[Any]]],
        max_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        name: str = "handler",
    ) -> None:
        self._run_batch = run_batch
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._name = name
        self._pending: deque[tuple[Any, asyncio.Future[Any], float]] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((item, fut, time.monotonic()))
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._loop(), name=f"cumulo-batcher-{self._name}")
        assert self._wake is not None
        self._wake.set()
        return await fut

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for _, fut, _ in self._pending:
            if not fut.done():
                fut.cancel()
        self._pending.clear()

    def _live(self) -> int:
        while self._pending and self._pending[0][1].done():
            self._pending.popleft()
        return len(self._pending)

    async def _loop(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            if not self._live():
                wake.clear()
                await wake.wait()
                continue
            deadline = self._pending[0][2] + self.max_wait_s
            while len(self._pending) < self.max_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), left)
                except TimeoutError:
                    break
            batch: list[tuple[Any, asyncio.Future[Any]]] = []
            while self._pending and len(batch) < self.max_size:
                item, fut, _ = self._pending.popleft()
                if not fut.done():
                    batch.append((item, fut))
            if batch:
                await self._dispatch(batch)

    async def _dispatch(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            results = await self._run_batch([item for item, _ in batch])
            if not isinstance(results, list | tuple) or len(results) != len(batch):
                got = f"{len(results)} results" if isinstance(results, list | tuple) else type(results).__name__
                raise BatchSizeError(
                    f"batched handler {self._name} must return a list with one result per item: "
                    f"got {got} for {len(batch)} items"
                )
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.cancel()
            raise
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
