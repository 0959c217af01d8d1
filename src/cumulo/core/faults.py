"""Fault injection for crash-safety tests: `CUMULO_FAULT=<point>` makes the control plane die
(like a SIGKILL: no cleanup, exit status 137) when it reaches that point. Unset, it costs one
dictionary lookup. Points: `before-launch` (an attempt is recorded, its launch not yet made);
`after-launch` (a cloud machine is launched for a node, not yet recorded on it)."""

from __future__ import annotations

import os


def crash_at(point: str) -> None:
    if os.environ.get("CUMULO_FAULT") == point:
        os._exit(137)
