"""The service `bench/sim_vs_live.py` deploys: what the simulator's replica model assumes, for real.

- a fixed service time: each request sleeps ``SVL_SERVICE_TIME`` seconds (asyncio, so the sleep
  costs no thread and no CPU);
- a fixed concurrency: at most ``SVL_CONCURRENCY`` requests run at once per replica; the rest wait
  in the replica's FIFO queue (``max_queue`` large: nothing is refused, as in the simulator);
- a cold start: ``setup()`` sleeps ``SVL_SETUP_DELAY`` seconds before the replica is ready (on top
  of the process start itself).
"""

from __future__ import annotations

import asyncio
import os
import time

import cumulo

SERVICE_TIME = float(os.environ.get("SVL_SERVICE_TIME", "0.5"))
CONCURRENCY = int(os.environ.get("SVL_CONCURRENCY", "8"))
SETUP_DELAY = float(os.environ.get("SVL_SETUP_DELAY", "8"))


class Sleeper(cumulo.Service):
    def setup(self) -> None:
        time.sleep(SETUP_DELAY)  # a model load; runs in a thread, /readyz answers 503 until it ends

    @cumulo.handler(max_concurrency=CONCURRENCY, max_queue=100_000)
    async def work(self, id: int = 0) -> int:
        await asyncio.sleep(SERVICE_TIME)
        return id
