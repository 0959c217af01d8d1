"""Health probes off the reconcile thread.

A probe is an HTTP GET that may take up to its timeout; made inline, one deployment whose replicas
accept connections and never answer held the deployment loop's worker for a timeout per replica on
every pass, and every other deployment waited behind it. Here a pass only *starts* a probe and
reads the result of one that finished since: probes run concurrently on one asyncio loop in a
background thread (one in flight per replica at most, so the replicas bound their number), each
with a total deadline of at most MAX_TIMEOUT, and a finished probe wakes its deployment so the
result is acted on at once.

    prober = Prober(wake=loop.enqueue)
    prober.start("dep-id", "dep-id/3", "http://127.0.0.1:9001/readyz", timeout=1.0)
    ok = prober.take("dep-id/3")   # True/False once finished, None while in flight or not started
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import httpx

log = logging.getLogger(__name__)

#: the longest a probe may take, whatever a stored spec says (submit rejects more: services/deployments.py)
MAX_TIMEOUT = 60.0


class Prober:
    def __init__(self, wake: Callable[[str], None] = lambda key: None, *, max_timeout: float = MAX_TIMEOUT) -> None:
        self.wake = wake
        self.max_timeout = max_timeout
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._results: dict[str, bool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._thread: threading.Thread | None = None

    def start(self, owner: str, key: str, url: str, timeout: float) -> bool:
        """Start probing `url` for `key` unless a probe of it is in flight; `wake(owner)` when it ends.
        True if a probe was started."""
        with self._lock:
            if key in self._running:
                return False
            self._running.add(key)
        loop = self._ensure_loop()
        timeout = min(max(timeout, 0.001), self.max_timeout)
        asyncio.run_coroutine_threadsafe(self._probe(owner, key, url, timeout), loop)
        return True

    def take(self, key: str) -> bool | None:
        """The result of `key`'s last finished probe, once (None if none finished since)."""
        with self._lock:
            return self._results.pop(key, None)

    def busy(self, key: str) -> bool:
        with self._lock:
            return key in self._running

    def forget(self, key: str) -> None:
        """Drop a finished result nobody will read (the replica ended)."""
        with self._lock:
            self._results.pop(key, None)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        client = self._client

        async def shutdown() -> None:
            if client is not None:
                await client.aclose()
            loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop)
        except RuntimeError:  # already closed
            pass
        if self._thread is not None:
            self._thread.join(5)

    # -- the probe loop --------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    # no pool limit: a replica that never answers must not hold a connection slot
                    # another deployment's probe would wait for (one probe per replica bounds them)
                    self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None,
                                                                         max_keepalive_connections=64))
                    ready.set()
                    loop.run_forever()
                    loop.close()

                self._thread = threading.Thread(target=run, name="health-probes", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    async def _probe(self, owner: str, key: str, url: str, timeout: float) -> None:
        ok = False
        try:
            assert self._client is not None
            async with asyncio.timeout(timeout):  # total: a replica trickling bytes is cut off too
                r = await self._client.get(url, timeout=timeout)
            ok = r.status_code < 400
        except (httpx.HTTPError, TimeoutError, OSError):
            ok = False
        except Exception:  # never lose the in-flight mark: the replica would never be probed again
            log.exception("health probe of %s failed unexpectedly", url)
        finally:
            with self._lock:
                self._running.discard(key)
                self._results[key] = ok
        try:
            self.wake(owner)
        except Exception:
            log.exception("waking %s after a probe failed", owner)
