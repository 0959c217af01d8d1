"""SLO burn rate over several windows (Google SRE workbook, "multiwindow, multi-burn-rate alerts").

The burn rate over a window is (bad / total in the window) / (1 - objective): 1.0 spends the error
budget exactly over the SLO period. An alert pair (long, short, factor) fires when BOTH windows burn
at ``factor`` or more: the long window makes it significant, the short one makes it reset quickly
once the problem stops. Defaults: 1 h / 5 min at 14.4x (2 % of a 30-day budget in an hour) and
6 h / 30 min at 6x (5 % in six hours). Window lengths are parameters (tests use seconds).

Pure and streaming: ``step_burn(params, state, t, bad, total) -> (state, Verdict)`` takes the counts
observed since the previous call (e.g. the gateway's errors and requests in the last interval). The
counts go into time buckets of ``bucket_s``; the state is a ring covering the longest window (bounded:
longest / bucket_s buckets) plus one running sum per window, so each call costs O(number of windows +
buckets crossed since the previous call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cumulo.policy.anomaly.verdict import Verdict

SRE_PAIRS: tuple[tuple[float, float, float], ...] = ((3600.0, 300.0, 14.4), (21600.0, 1800.0, 6.0))


@dataclass(frozen=True, slots=True)
class BurnParams:
    objective: float = 0.999
    pairs: tuple[tuple[float, float, float], ...] = SRE_PAIRS
    bucket_s: float = 0.0  # 0: a tenth of the shortest window

    def __post_init__(self) -> None:
        if not 0.0 < self.objective < 1.0:
            raise ValueError(f"BurnParams.objective must be in (0, 1), e.g. 0.999; got {self.objective}")
        if not self.pairs:
            raise ValueError("BurnParams.pairs needs at least one (long_s, short_s, factor)")
        for long_s, short_s, factor in self.pairs:
            if not (long_s > 0 and short_s > 0 and factor > 0 and short_s <= long_s):
                raise ValueError(f"BurnParams.pairs: bad ({long_s}, {short_s}, {factor}): "
                                 "need 0 < short_s <= long_s and factor > 0")
        if self.bucket_s < 0:
            raise ValueError("BurnParams.bucket_s must be >= 0")

    @property
    def bucket(self) -> float:
        return self.bucket_s or min(s for _, s, _ in self.pairs) / 10.0

    def windows(self) -> tuple[float, ...]:
        return tuple(sorted({w for long_s, short_s, _ in self.pairs for w in (long_s, short_s)}))

    def buckets_in(self, window_s: float) -> int:
        return max(1, math.ceil(window_s / self.bucket - 1e-9))


@dataclass(frozen=True, slots=True)
class BurnState:
    head: int = -1  # index (t // bucket) of the newest bucket; -1 before the first call
    bad: tuple[float, ...] = ()
    total: tuple[float, ...] = ()
    sums: tuple[tuple[float, float], ...] = ()  # per window (in params.windows() order): (bad, total)


def step_burn(p: BurnParams, s: BurnState, t: float, bad: float, total: float) -> tuple[BurnState, Verdict]:
    """Add ``bad`` of ``total`` events observed at time ``t`` (seconds); judge every window pair."""
    if not (math.isfinite(bad) and math.isfinite(total)) or bad < 0 or total < 0 or bad > total:
        raise ValueError(f"need finite counts with 0 <= bad <= total, got bad={bad}, total={total}")
    windows = p.windows()
    spans = [p.buckets_in(w) for w in windows]
    size = max(spans)
    idx = int(t // p.bucket)
    if s.head < 0 or len(s.bad) != size or len(s.sums) != len(windows):
        ring_bad, ring_total = [0.0] * size, [0.0] * size
        sums = [[0.0, 0.0] for _ in windows]
        head = idx
    else:
        ring_bad, ring_total = list(s.bad), list(s.total)
        sums = [list(x) for x in s.sums]
        head = s.head
        if idx > head:
            steps = min(idx - head, size)
            if steps == size:  # everything expired
                ring_bad, ring_total = [0.0] * size, [0.0] * size
                sums = [[0.0, 0.0] for _ in windows]
            else:
                for b in range(head + 1, head + steps + 1):
                    for wi, span in enumerate(spans):  # the bucket leaving each window
                        old = (b - span) % size
                        sums[wi][0] -= ring_bad[old]
                        sums[wi][1] -= ring_total[old]
                    ring_bad[b % size] = 0.0  # the new bucket reuses the slot of b - size
                    ring_total[b % size] = 0.0
            head = idx
        # a late sample (idx < head) is counted in the newest bucket
    slot = head % size
    ring_bad[slot] += bad
    ring_total[slot] += total
    for pair in sums:
        pair[0] += bad
        pair[1] += total
    budget = 1.0 - p.objective
    rate = {}
    for w, (b_sum, t_sum) in zip(windows, sums):
        rate[w] = (max(b_sum, 0.0) / t_sum) / budget if t_sum > 1e-12 else 0.0
    judged = []
    for long_s, short_s, factor in p.pairs:
        both = min(rate[long_s], rate[short_s])
        judged.append((both >= factor, min(1.0, both / factor), (long_s, short_s, factor)))
    fires, best_score, best = max(judged, key=lambda j: (j[0], j[1]))
    long_s, short_s, factor = best
    reason = ""
    if fires:
        reason = (f"error budget burning {rate[long_s]:.1f}x over {long_s:g}s and {rate[short_s]:.1f}x over "
                  f"{short_s:g}s (alert at {factor:g}x, objective {p.objective})")
    state = BurnState(head=head, bad=tuple(ring_bad), total=tuple(ring_total), sums=tuple(tuple(x) for x in sums))
    return state, Verdict(score=max(best_score, 0.0), fires=fires, value=rate[long_s], expected=1.0,
                          threshold=factor, window=long_s, reason=reason)


def burn_rates(p: BurnParams, s: BurnState) -> dict[float, float]:
    """The current burn rate per window length (seconds), for display."""
    budget = 1.0 - p.objective
    return {w: ((b / t) / budget if t > 1e-12 else 0.0) for w, (b, t) in zip(p.windows(), s.sums)}
