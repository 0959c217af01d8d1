"""Request traces: load them into one shape, with the line number of any bad row.

Formats (see shared/traces/README.md):

- **Azure LLM inference CSV** (``TIMESTAMP,ContextTokens,GeneratedTokens``): one row per request;
- **ServeGen chunk CSV** (no header; ``t_start_s,rate_rps,cv,iat_distribution,p1,p2`` per 600 s
  window), a directory of them (one per client, summed), or a ``*-total.csv``
  (``t_start_s,total_rate_rps,active_clients``): rates per window, arrivals synthesised
  (``cumulo.sim.synth``);
- **JSONL**: one object per line with ``t_ms`` (or ``timestamp_ms``) in milliseconds and optional
  ``service_s`` or ``input_tokens``/``output_tokens``.

Rows must be sorted by time; a malformed or out-of-order row raises :class:`TraceError` naming the
file and line.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from cumulo.core.errors import InvalidSpec

__all__ = ["RequestTrace", "TraceError", "Window", "WindowTrace", "load_trace"]


class TraceError(InvalidSpec):
    """A trace file that cannot be read; the message names the file and line."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}", errors=[{"field": "trace", "line": line, "message": message}])
        self.line = line


@dataclass(frozen=True)
class RequestTrace:
    """Individual requests: arrival times (s, from 0, sorted) and tokens where the trace has them."""

    name: str
    times: np.ndarray
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return float(self.times[-1]) + 1.0 if len(self.times) else 0.0


@dataclass(frozen=True)
class Window:
    """One client's (or the total's) rate in one window, with its inter-arrival distribution."""

    start: float
    rate: float
    cv: float = 1.0
    distribution: str = "Exponential"
    p1: float = 1.0
    p2: float = 1.0


@dataclass(frozen=True)
class WindowTrace:
    """Per-window rates (ServeGen). ``clients`` holds one list of windows per client."""

    name: str
    window: float
    clients: list[list[Window]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        ends = [c[-1].start + self.window for c in self.clients if c]
        return max(ends) if ends else 0.0


def load_trace(path: str | Path) -> RequestTrace | WindowTrace:
    """Load a trace file or ServeGen chunk directory, choosing the reader by its shape."""
    p = Path(path)
    if not p.exists():
        raise TraceError(p, None, "no such file or directory")
    if p.is_dir():
        files = sorted(p.glob("chunk-*-trace.csv"), key=_chunk_number)
        if not files:
            raise TraceError(p, None, "directory holds no ServeGen chunk-N-trace.csv files")
        return WindowTrace(p.name, 600.0, [_read_chunk(f) for f in files])
    if p.suffix == ".jsonl":
        return _read_jsonl(p)
    with p.open(newline="") as f:
        first = f.readline().strip()
    if first.startswith("TIMESTAMP"):
        return _read_azure(p)
    if first.startswith("t_start_s"):
        return WindowTrace(p.stem, 600.0, [_read_total(p)])
    return WindowTrace(p.stem, 600.0, [_read_chunk(p)])


def _chunk_number(p: Path) -> int:
    try:
        return int(p.name.split("-")[1])
    except (IndexError, ValueError):
        return 1 << 30


def _number(p: Path, line: int, text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise TraceError(p, line, f"{what} is not a number: {text!r}") from None
    if not math.isfinite(v):
        raise TraceError(p, line, f"{what} is not finite: {text!r}")
    return v


def _read_azure(p: Path) -> RequestTrace:
    times: list[float] = []
    ins: list[float] = []
    outs: list[float] = []
    t0: datetime | None = None
    with p.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if [h.strip() for h in header[:3]] != ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]:
            raise TraceError(p, 1, "expected header TIMESTAMP,ContextTokens,GeneratedTokens")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 3:
                raise TraceError(p, line, f"expected 3 columns, got {len(row)}")
            ts = row[0].strip()
            try:
                # 100 ns precision: keep microseconds (Python's datetime resolution)
                if "." in ts:
                    head, frac = ts.split(".", 1)
                    ts = f"{head}.{frac[:6]}"
                when = datetime.fromisoformat(ts)
            except ValueError:
                raise TraceError(p, line, f"TIMESTAMP is not a date-time: {row[0]!r}") from None
            if t0 is None:
                t0 = when
            t = (when - t0).total_seconds()
            if times and t < times[-1]:
                raise TraceError(p, line, f"rows are not sorted by TIMESTAMP ({row[0]} is earlier than the row before)")
            ctx = _number(p, line, row[1], "ContextTokens")
            gen = _number(p, line, row[2], "GeneratedTokens")
            if ctx < 0 or gen < 0:
                raise TraceError(p, line, "token counts must be >= 0")
            times.append(t)
            ins.append(ctx)
            outs.append(gen)
    if not times:
        raise TraceError(p, None, "trace holds no requests")
    return RequestTrace(p.stem, np.array(times), np.array(ins), np.array(outs))


def _read_jsonl(p: Path) -> RequestTrace:
    times: list[float] = []
    ins: list[float] = []
    outs: list[float] = []
    with p.open() as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise TraceError(p, line, f"invalid JSON: {e.msg}") from None
            if not isinstance(obj, dict):
                raise TraceError(p, line, "expected a JSON object")
            key = "t_ms" if "t_ms" in obj else "timestamp_ms" if "timestamp_ms" in obj else None
            if key is None:
                raise TraceError(p, line, "missing 't_ms' (milliseconds)")
            v = obj[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TraceError(p, line, f"'{key}' must be a number, got {v!r}")
            t = v / 1000.0
            if times and t < times[-1]:
                raise TraceError(p, line, f"rows are not sorted by time ({v} ms comes after a later one)")
            times.append(t)
            ins.append(float(obj.get("input_tokens", 0) or 0))
            outs.append(float(obj.get("output_tokens", 0) or 0))
    if not times:
        raise TraceError(p, None, "trace holds no requests")
    arr = np.array(times)
    has_tokens = any(ins) or any(outs)
    return RequestTrace(
        p.stem, arr - arr[0], np.array(ins) if has_tokens else None, np.array(outs) if has_tokens else None
    )


DISTRIBUTIONS = {"", "Exponential", "Gamma", "Weibull"}


def _read_chunk(p: Path) -> list[Window]:
    out: list[Window] = []
    with p.open(newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) != 6:
                raise TraceError(p, line, f"expected 6 columns (t_start_s,rate_rps,cv,iat_distribution,p1,p2), got {len(row)}")
            start = _number(p, line, row[0], "t_start_s")
            rate = _number(p, line, row[1], "rate_rps")
            cv = _number(p, line, row[2], "cv")
            dist = row[3].strip()
            if dist not in DISTRIBUTIONS:
                raise TraceError(p, line, f"unknown iat_distribution {dist!r}")
            p1 = _number(p, line, row[4], "p1")
            p2 = _number(p, line, row[5], "p2")
            if rate < 0 or cv < 0:
                raise TraceError(p, line, "rate_rps and cv must be >= 0")
            if out and start <= out[-1].start:
                raise TraceError(p, line, f"rows are not sorted by t_start_s ({row[0]} after {out[-1].start:g})")
            if rate > 0:
                out.append(Window(start, rate, cv or 1.0, dist or "Exponential", p1, p2))
            else:
                out.append(Window(start, 0.0))
    return out


def _read_total(p: Path) -> list[Window]:
    out: list[Window] = []
    with p.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2:
                raise TraceError(p, line, f"expected t_start_s,total_rate_rps[,active_clients], got {len(row)} columns")
            start = _number(p, line, row[0], "t_start_s")
            rate = _number(p, line, row[1], "total_rate_rps")
            if rate < 0:
                raise TraceError(p, line, "total_rate_rps must be >= 0")
            if out and start <= out[-1].start:
                raise TraceError(p, line, f"rows are not sorted by t_start_s ({row[0]} after {out[-1].start:g})")
            out.append(Window(start, rate))
    return out
