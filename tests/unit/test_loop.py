"""The reconcile loop's work queue: each key once at a time, requeues, hints while busy, backoff."""

from __future__ import annotations

import threading
import time

import pytest

from cumulo.control.loop import Loop


class Recorder:
    name = "test"
    resync = 60.0

    def __init__(self, keys=(), work=0.0, again=None, fail=()):
        self._keys = list(keys)
        self.work = work
        self.again = again
        self.fail = set(fail)
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.overlaps: list[str] = []
        self.calls: list[str] = []
        self.done = threading.Event()

    def keys(self):
        return list(self._keys)

    def reconcile(self, key):
        with self.lock:
            self.active[key] = self.active.get(key, 0) + 1
            if self.active[key] > 1:
                self.overlaps.append(key)
            self.calls.append(key)
        try:
            time.sleep(self.work)
            if key in self.fail:
                raise RuntimeError("boom")
            return self.again(key) if callable(self.again) else self.again
        finally:
            with self.lock:
                self.active[key] -= 1
            self.done.set()


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


@pytest.mark.parametrize("workers", [1, 4])
def test_every_key_is_reconciled_once_on_start_and_never_by_two_workers_at_once(workers):
    rec = Recorder(keys=[f"k{i}" for i in range(20)], work=0.01)
    loop = Loop(rec, workers=workers)
    loop.start()
    try:
        wait_for(lambda: len(rec.calls) >= 20)
        for _ in range(50):  # hammer one key with hints while workers have it
            loop.enqueue("k0")
            time.sleep(0.001)
        time.sleep(0.1)
    finally:
        loop.stop()
    assert sorted(set(rec.calls)) == sorted(rec.keys())
    assert rec.overlaps == []
    # hints that came while k0 was being reconciled were folded into one more pass each time
    assert 2 <= rec.calls.count("k0") <= 51


def test_a_hint_while_busy_is_not_lost():
    rec = Recorder(keys=["a"], work=0.2)
    loop = Loop(rec, workers=2)
    loop.start()
    try:
        wait_for(lambda: rec.calls == ["a"])
        loop.enqueue("a")  # arrives while the first pass runs: a second pass must follow it
        wait_for(lambda: len(rec.calls) == 2)
    finally:
        loop.stop()
    assert rec.overlaps == []


def test_requeue_after_is_honoured():
    rec = Recorder(keys=["a"], again=lambda key: 0.1)
    loop = Loop(rec)
    loop.start()
    try:
        t0 = time.monotonic()
        wait_for(lambda: len(rec.calls) >= 4)
        elapsed = time.monotonic() - t0
    finally:
        loop.stop()
    assert elapsed >= 0.25  # three waits of 0.1 s between four passes


def test_a_failing_key_backs_off_and_does_not_stop_the_others():
    rec = Recorder(keys=["bad", "good"], fail={"bad"}, again=lambda key: 0.05 if key == "good" else None)
    loop = Loop(rec, workers=2)
    loop.start()
    try:
        time.sleep(1.2)
    finally:
        loop.stop()
    # backoff 0.5 s, then 1 s: at most three passes of the bad key in 1.2 s; the good one kept going
    assert 1 <= rec.calls.count("bad") <= 3
    assert rec.calls.count("good") >= 10


def test_zero_workers_is_refused():
    with pytest.raises(ValueError, match="at least one worker"):
        Loop(Recorder(), workers=0)
