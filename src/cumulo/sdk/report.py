"""cumulo.report(step=..., **metrics): training progress from inside a job; a no-op elsewhere.

Points are sent at most once a second (batched) and at exit. Points that cannot be delivered (the control plane is restarting) are kept and sent with the
next call, so a restart loses nothing; the buffer is bounded.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from datetime import UTC, datetime

import httpx

from cumulo.core import settings

log = logging.getLogger(__name__)

MAX_BUFFERED = 10_000
#: send at most this often (points in between are batched); the rest goes at exit
FLUSH_EVERY = 1.0

_lock = threading.Lock()
_pending: list[dict] = []
_client: httpx.Client | None = None
_warned = False
_last_flush = 0.0
_timer: threading.Timer | None = None


def report(step: int | None = None, **metrics: float) -> None:
    """Record training metrics (e.g. ``report(step=epoch, loss=0.12, accuracy=0.97)``).

    Outside a cumulo job (no CUMULO_JOB in the environment) this does nothing. Non-numeric values
    are skipped with a warning; NaN and infinite values are sent (a loss that went NaN is what the
    job's health check acts on: see `health.on_nan`). Never raises: training must not die of it.
    """
    job = os.environ.get("CUMULO_JOB")
    if not job:
        return
    values = {}
    for key, value in metrics.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            log.warning("cumulo.report: %s=%r is not a number; skipped", key, value)
            continue
        # JSON has no NaN: a non-finite value travels as the string the API reads back as one
        values[key] = v if math.isfinite(v) else ("NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity")
    if not values:
        return
    point = {"step": step, "time": datetime.now(UTC).isoformat(), "values": values}
    with _lock:
        _pending.append(point)
        del _pending[:-MAX_BUFFERED]
        if time.monotonic() - _last_flush >= FLUSH_EVERY:
            _flush(job)
        elif _timer is None or not _timer.is_alive():
            _start_timer(job)


def _start_timer(job: str) -> None:
    global _timer
    _timer = threading.Timer(FLUSH_EVERY, _flush_locked, args=(job,))
    _timer.daemon = True
    _timer.start()


def _flush_locked(job: str) -> None:
    with _lock:
        _flush(job)


def _flush(job: str) -> None:
    global _client, _warned, _last_flush
    _last_flush = time.monotonic()
    if not _pending:
        return
    if _client is None:
        _client = httpx.Client(base_url=os.environ.get("CUMULO_URL", "http://127.0.0.1:8200"), timeout=5.0,
                               headers=settings.auth_headers())
    attempt = os.environ.get("CUMULO_ATTEMPT")
    body = {"attempt": int(attempt) if attempt else None, "points": list(_pending)}
    try:
        r = _client.post(f"/api/v1/jobs/{job}/metrics", json=body)
    except httpx.HTTPError as exc:
        if not _warned:
            log.warning("cumulo.report: control plane unreachable (%s); keeping %d points to send later", exc, len(_pending))
            _warned = True
        return
    if r.status_code < 300 or 400 <= r.status_code < 500:
        if r.status_code >= 400:
            log.warning("cumulo.report: the control plane refused the points: %s", r.text)
        _pending.clear()
        _warned = False


#: seconds a job's process waits at exit for an unreachable control plane (e.g. restarting) to take
#: its last points
EXIT_WAIT = float(os.environ.get("CUMULO_REPORT_EXIT_WAIT", "30"))


@atexit.register
def _flush_at_exit() -> None:
    job = os.environ.get("CUMULO_JOB")
    if not job:
        return
    deadline = time.monotonic() + EXIT_WAIT
    with _lock:
        _flush(job)
        while _pending and time.monotonic() < deadline:  # only while the control plane is unreachable
            time.sleep(0.5)
            _flush(job)
