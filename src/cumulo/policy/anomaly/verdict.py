"""What every detector returns for a point: a score, whether it fires, and the evidence."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    """One detector's judgement of one observation.

    ``score`` is in [0, 1] (1 = certainly anomalous); ``fires`` says whether an alert should fire now.
    The evidence lets an alert or event show why: the observed ``value``, what the detector
    ``expected``, the ``threshold`` it compared against (in the units of ``value`` where that makes
    sense, else of ``score``), the ``window`` (seconds) the judgement covers, and a one-line
    ``reason`` a person can read.
    """

    score: float
    fires: bool
    value: float
    expected: float
    threshold: float
    window: float
    reason: str = ""

    def evidence(self) -> dict:
        """The evidence as plain data (for events, alerts and JSON)."""
        return {"score": self.score, "fires": self.fires, "value": self.value, "expected": self.expected,
                "threshold": self.threshold, "window_s": self.window, "reason": self.reason}


QUIET = Verdict(score=0.0, fires=False, value=0.0, expected=0.0, threshold=0.0, window=0.0, reason="")
