"""The reconcile loop's work queue on a fake clock: each key once at a time, requeues, hints while
busy, backoff. The queue is driven by hand (`poll` + `step`, what each worker thread does), so no
test sleeps and every count is exact; one test runs real worker threads, synchronised by events."""

from __future__ import annotations

import threading

import pytest

from cumulo.control.loop import Loop


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    name = "test"
    resync = 60.0

    def __init__(self, keys=(), again=None, fail=()):
        self._keys = list(keys)
        self.again = again
        self.fail = set(fail)
        self.calls: list[str] = []

    def keys(self):
        return list(self._keys)

    def reconcile(self, key):
        self.calls.append(key)
        if key in self.fail:
            raise RuntimeError("boom")
        return self.again(key) if callable(self.again) else self.again


def drain(loop: Loop) -> list[str]:
    """Reconcile every key due now, as the workers would; the keys in the order taken."""
    taken = []
    while (key := loop.poll()) is not None:
        taken.append(key)
        loop.step(key)
    return taken


def run_for(loop: Loop, clock: Clock, seconds: float, tick: float) -> None:
    """Advance the fake clock in `tick` steps for `seconds`, draining what is due at each step
    (ticks and delays here are binary fractions, so the arithmetic is exact)."""
    start = clock.t
    for i in range(round(seconds / tick) + 1):
        clock.t = start + i * tick
        drain(loop)


def test_a_resync_queues_every_key_and_each_is_reconciled_once():
    clock = Clock()
    rec = Recorder(keys=[f"k{i}" for i in range(5)])
    loop = Loop(rec, clock=clock)
    loop.resync_now()
    loop.resync_now()  # listing again while they wait does not queue them twice
    assert drain(loop) == ["k0", "k1", "k2", "k3", "k4"]
    assert rec.calls == ["k0", "k1", "k2", "k3", "k4"]
    assert loop.poll() is None
    assert loop.passes == 5


def test_a_key_being_reconciled_is_not_handed_out_again_and_hints_fold_into_one_more_pass():
    clock = Clock()
    rec = Recorder()
    loop = Loop(rec, clock=clock)
    loop.enqueue("a")
    assert loop.poll() == "a"  # a worker has it now
    for _ in range(50):
        loop.enqueue("a")  # hints while it is being reconciled
    assert loop.poll() is None  # a second worker is not given the same key
    loop.step("a")
    assert loop.poll() == "a"  # the hints became exactly one more pass
    loop.step("a")
    assert loop.poll() is None
    assert rec.calls == ["a", "a"]


def test_requeue_after_is_honoured_on_the_loops_clock():
    clock = Clock()
    rec = Recorder(again=lambda key: 0.5)
    loop = Loop(rec, clock=clock)
    loop.enqueue("a")
    assert drain(loop) == ["a"]
    clock.t += 0.49
    assert loop.poll() is None
    clock.t += 0.01
    assert loop.poll() == "a"


def test_an_earlier_hint_moves_a_queued_key_up_and_the_later_entry_is_dropped():
    clock = Clock()
    rec = Recorder()
    loop = Loop(rec, clock=clock)
    loop.enqueue("a", after=10)
    assert loop.poll() is None
    loop.enqueue("a")  # an API write: now
    loop.enqueue("a", after=30)  # a later one changes nothing
    assert drain(loop) == ["a"]
    clock.t += 40
    assert drain(loop) == []  # the superseded due times are not passes
    assert rec.calls == ["a"]


def test_a_failing_key_backs_off_exponentially_and_does_not_stop_the_others():
    clock = Clock()
    rec = Recorder(fail={"bad"}, again=lambda key: 0.25)
    loop = Loop(rec, clock=clock)
    loop.enqueue_all(["bad", "good"])
    run_for(loop, clock, 3.75, 0.25)
    # backoff 0.5 s, then 1 s, then 2 s: passes at 0, 0.5, 1.5 and 3.5 s
    assert rec.calls.count("bad") == 4
    assert rec.calls.count("good") == 16  # every 0.25 s from 0 to 3.75 s
    rec.fail.clear()  # it recovers: a success forgets the failures
    rec.again = lambda key: None
    clock.t += 4.0
    assert sorted(drain(loop)) == ["bad", "good"]
    rec.fail.add("bad")
    loop.enqueue("bad")
    assert drain(loop) == ["bad"]
    clock.t += 0.49
    assert drain(loop) == []
    clock.t += 0.01  # the first backoff again (0.5 s), not the fifth
    assert drain(loop) == ["bad"]


def test_two_worker_threads_never_reconcile_one_key_at_once():
    clock = Clock()  # frozen: only hints queue work
    release = threading.Event()
    seen: dict[str, threading.Event] = {k: threading.Event() for k in ("a1", "a2", "b")}
    calls: list[str] = []
    lock = threading.Lock()
    active: set[str] = set()
    overlaps: list[str] = []

    class Blocking(Recorder):
        def reconcile(self, key):
            with lock:
                if key in active:
                    overlaps.append(key)
                active.add(key)
                calls.append(key)
                n = calls.count(key)
            try:
                seen.get(f"{key}{n}" if key == "a" else key, threading.Event()).set()
                if key == "a" and n == 1:
                    assert release.wait(10)
            finally:
                with lock:
                    active.discard(key)

    loop = Loop(Blocking(keys=["a"]), workers=2, clock=clock)
    loop.start()
    try:
        assert seen["a1"].wait(10)  # one worker has "a" and holds it
        for _ in range(20):
            loop.enqueue("a")
        loop.enqueue("b")  # queued after the hints: a free worker would take "a" first if it could
        assert seen["b"].wait(10)
        assert calls == ["a", "b"]
        release.set()
        assert seen["a2"].wait(10)  # the hints were folded into one more pass
    finally:
        release.set()
        loop.stop()
    assert overlaps == []
    assert calls.count("a") == 2


def test_zero_workers_is_refused():
    with pytest.raises(ValueError, match="at least one worker"):
        Loop(Recorder(), workers=0)
