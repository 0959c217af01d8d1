"""Exponential backoff: the delay before retry ``n`` (1-based)."""

from __future__ import annotations


def backoff_delay(retry: int, *, initial: float, factor: float = 2.0, maximum: float = 300.0) -> float:
    """``min(initial * factor**(retry-1), maximum)``; retry 0 or less waits nothing."""
    if retry <= 0 or initial <= 0:
        return 0.0
    # cap the exponent so a huge retry count cannot overflow a float
    exponent = min(retry - 1, 1024)
    try:
        delay = initial * factor**exponent
    except OverflowError:
        return maximum
    return min(delay, maximum)
