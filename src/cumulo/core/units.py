"""Resource quantities: CPUs as floats (``"500m"`` = 0.5), memory in bytes (``"4Gi"``, ``"512M"``)."""

from __future__ import annotations

import math
import re

#: upper bounds that keep every quantity a finite number the store and the clocks can hold
MAX_MEMORY = 2**60  # 1 EiB
MAX_CPU = 1e6
MAX_DURATION = 10 * 365 * 86400.0  # ten years, in seconds

_MEM_UNITS = {
    "": 1,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def _within(x: float, what: str, nan: str, maximum: float, too_big: str) -> None:
    """The checks every quantity shares: a number, not negative, not beyond what anything holds."""
    if math.isnan(x):
        raise ValueError(nan)
    if x < 0:
        raise ValueError(f"{what} cannot be negative")
    if x > maximum:
        raise ValueError(too_big)


_MEM_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: str | int | float) -> int:
    """Bytes from ``4Gi``, ``512Mi``, ``2G``, ``1.5GiB`` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("memory must be a size such as '4Gi' or '512Mi', not a boolean")
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        m = _MEM_RE.match(str(value))
        if not m or m.group(2).lower() not in _MEM_UNITS:
            raise ValueError(f"{value!r} is not a memory size; write it like '4Gi', '512Mi' or '2G'")
        size = float(m.group(1)) * _MEM_UNITS[m.group(2).lower()]
    _within(size, "memory", "memory must be a size such as '4Gi' or '512Mi', not NaN", MAX_MEMORY,
            f"memory {value!r} is more than any machine has (at most {MAX_MEMORY} bytes, 1Ei)")
    return int(value) if isinstance(value, int) else int(size)


def parse_cpu(value: str | int | float) -> float:
    """CPUs from ``2``, ``0.5`` or ``500m`` (millicores)."""
    if isinstance(value, bool):
        raise ValueError("cpu must be a number of CPUs such as 2 or '500m', not a boolean")
    if isinstance(value, (int, float)):
        cpus = float(value)
    else:
        text = str(value).strip()
        try:
            cpus = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a CPU count; write it like 2, 0.5 or '500m'") from None
    _within(cpus, "cpu", "cpu must be a number of CPUs such as 2 or '500m', not NaN", MAX_CPU,
            f"cpu {value!r} is more than any machine has (at most {MAX_CPU:g})")
    return cpus


def format_memory(num_bytes: float) -> str:
    """Human-readable binary size: ``1.5Gi``."""
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if abs(num_bytes) >= size:
            return f"{num_bytes / size:.1f}{unit}".replace(".0", "")
    return f"{int(num_bytes)}B"


_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``30``, ``30s``, ``5m``, ``2h``, ``500ms``."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or text like '5m'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration; write it like 30, '30s', '5m' or '2h'")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    _within(seconds, "a duration", "a duration must be a number of seconds or text like '5m', not NaN",
            MAX_DURATION, f"a duration of {value!r} is longer than ten years; use a shorter one")
    return seconds
