"""The reconcile loop: a work queue of keys, one worker thread, resync, and backoff on errors.

Like kubernetes/sample-controller: a key is queued when an API write hints at it (`enqueue`),
when a reconcile asks to be looked at again (`requeue_after`), and on every periodic resync. A
key is never in the queue twice; a failing key backs off exponentially and never stops the loop.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from cumulo.policy.backoff import backoff_delay

log = logging.getLogger(__name__)


class Reconciler(Protocol):
    name: str
    #: seconds between full passes over every key
    resync: float

    def keys(self) -> list[str]: ...

    def reconcile(self, key: str) -> float | None:
        """Close the gap for one key; return seconds until it should be looked at again, or None."""


class Loop:
    def __init__(self, reconciler: Reconciler, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.reconciler = reconciler
        self.clock = clock
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._failures: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    # -- queue -------------------------------------------------------------------------------
    def enqueue(self, key: str, after: float = 0.0) -> None:
        due = self.clock() + max(after, 0.0)
        with self._cond:
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._cond.notify()

    def enqueue_all(self, keys: list[str]) -> None:
        for key in keys:
            self.enqueue(key)

    def _next(self) -> str | None:
        with self._cond:
            while not self._stop.is_set():
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier due time
                wait = self._heap[0][0] - self.clock() if self._heap else self.reconciler.resync
                if self._heap and wait <= 0:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                if wait > 0:
                    self._cond.wait(min(wait, self.reconciler.resync))
                if not self._heap and not self._stop.is_set():
                    return None  # idle for a whole resync period: time for a resync
            return None

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"reconcile-{self.reconciler.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _resync(self) -> None:
        try:
            self.enqueue_all(self.reconciler.keys())
        except Exception:
            log.exception("%s: listing keys failed; will retry", self.reconciler.name)

    def _run(self) -> None:
        self._resync()
        last_resync = self.clock()
        while not self._stop.is_set():
            if self.clock() - last_resync >= self.reconciler.resync:
                self._resync()
                last_resync = self.clock()
            key = self._next()
            if key is None:
                continue
            self.step(key)

    def step(self, key: str) -> None:
        """Reconcile one key now and queue it again as it asks (or with backoff if it failed)."""
        self.passes += 1
        try:
            again = self.reconciler.reconcile(key)
        except Exception:
            n = self._failures.get(key, 0) + 1
            self._failures[key] = n
            delay = backoff_delay(n, initial=0.5, maximum=30.0)
            log.exception("%s %s: reconcile failed (%d in a row); retrying in %.1fs", self.reconciler.name, key, n, delay)
            self.enqueue(key, delay)
            return
        self._failures.pop(key, None)
        if again is not None:
            self.enqueue(key, again)
