"""The reconcile loop: a work queue of keys, worker threads, resync, and backoff on errors.

Like kubernetes/sample-controller: a key is queued when an API write hints at it (`enqueue`),
when a reconcile asks to be looked at again (`requeue_after`), and on every periodic resync. A
key is never in the queue twice and never reconciled by two workers at once (a key enqueued while
a worker has it is queued again when that worker is done, as client-go's workqueue does); a
failing key backs off exponentially and never stops the loop. More than one worker pays off when
a pass mostly waits on the database (PostgreSQL) or on the runtime.
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
    def __init__(
        self, reconciler: Reconciler, *, workers: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if workers < 1:
            raise ValueError("a loop needs at least one worker")
        self.reconciler = reconciler
        self.workers = workers
        self.clock = clock
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}  # queued keys -> when they are due
        self._processing: set[str] = set()  # keys a worker has now
        self._dirty: dict[str, float] = {}  # keys enqueued while a worker had them
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._failures: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_resync = float("-inf")
        self.passes = 0

    # -- queue -------------------------------------------------------------------------------
    def enqueue(self, key: str, after: float = 0.0) -> None:
        due = self.clock() + max(after, 0.0)
        with self._cond:
            if key in self._processing:  # queued again once the worker that has it is done
                self._dirty[key] = min(due, self._dirty.get(key, due))
                return
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._cond.notify()

    def enqueue_all(self, keys: list[str]) -> None:
        for key in keys:
            self.enqueue(key)

    def poll(self) -> str | None:
        """Take the next key that is due now, without waiting (None if none is); the caller owns it
        until it calls `step(key)`. The worker threads use this; so can a test driving the loop by
        hand with a fake clock."""
        with self._cond:
            return self._take()

    def _take(self) -> str | None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # superseded by an earlier due time
        if self._heap and self._heap[0][0] <= self.clock():
            _, _, key = heapq.heappop(self._heap)
            del self._due[key]
            self._processing.add(key)
            return key
        return None

    def _next(self) -> str | None:
        with self._cond:
            while not self._stop.is_set():
                key = self._take()
                if key is not None:
                    return key
                wait = self._heap[0][0] - self.clock() if self._heap else self.reconciler.resync
                self._cond.wait(min(max(wait, 0.0), self.reconciler.resync))
                if not self._heap and not self._stop.is_set():
                    return None  # idle for a whole resync period: time for a resync
            return None

    def resync_now(self) -> None:
        """Queue every key the reconciler lists (what a worker does once per resync period)."""
        self._resync()

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.workers):
            name = f"reconcile-{self.reconciler.name}" + (f"-{i}" if self.workers > 1 else "")
            thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def _resync(self) -> None:
        try:
            self.enqueue_all(self.reconciler.keys())
        except Exception:
            log.exception("%s: listing keys failed; will retry", self.reconciler.name)

    def _resync_due(self) -> bool:
        """Whether this worker should resync now (only one of them does, once per period)."""
        with self._cond:
            now = self.clock()
            if now - self._last_resync < self.reconciler.resync:
                return False
            self._last_resync = now
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._resync_due():
                self._resync()
            key = self._next()
            if key is None:
                continue
            self.step(key)

    def step(self, key: str) -> None:
        """Reconcile a key this worker took from the queue; queue it again as it asks (or with
        backoff if it failed)."""
        with self._cond:
            self.passes += 1
        again: float | None
        try:
            again = self.reconciler.reconcile(key)
        except Exception:
            with self._cond:
                n = self._failures[key] = self._failures.get(key, 0) + 1
            again = backoff_delay(n, initial=0.5, maximum=30.0)
            log.exception("%s %s: reconcile failed (%d in a row); retrying in %.1fs", self.reconciler.name, key, n, again)
        else:
            with self._cond:
                self._failures.pop(key, None)
        self._done(key, again)

    def _done(self, key: str, again: float | None) -> None:
        with self._cond:
            self._processing.discard(key)
            dirty = self._dirty.pop(key, None)
            after = [] if again is None else [again]
            if dirty is not None:
                after.append(dirty - self.clock())
            if after:
                self.enqueue(key, min(after))
