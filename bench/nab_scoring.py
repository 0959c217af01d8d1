"""NAB's scoring, written from the paper and NAB's published rules (A. Lavin and S. Ahmad, "Evaluating
Real-time Anomaly Detection Algorithms - the Numenta Anomaly Benchmark", ICMLA 2015, arXiv:1510.03336;
data, labels and profiles from numenta/NAB, MIT).

Rules, as NAB's sweeper applies them:
- Each series has anomaly windows [start, end] (labels/combined_windows.json).
- A point inside a window at relative position p = -(right - i + 1) / width (p is -1 at the window's
  first point and close to 0 at its last) is worth tpWeight * sigma(p) / sigma(-1), where
  sigma(p) = 2 / (1 + exp(5 p)) - 1 (the scaled sigmoid). Only the window's best (earliest) detection
  counts; a window with no detection costs -fnWeight.
- A point outside every window is worth fpWeight * sigma(d) if a window precedes it, where
  d = |i - right_of_previous_window| / (width_of_previous_window - 1) (sigma is -1 beyond d = 3), and
  -fpWeight if no window precedes it. Detections there add that (negative) value.
- The first min(floor(0.15 n), 0.15 * 5000) points of a series of n points (the probationary period)
  are not scored.
- A threshold turns scores into detections (score >= threshold). Per profile, NAB takes the threshold
  that maximizes the corpus total (every distinct score is tried, highest first; ties keep the higher
  threshold), then normalizes: 100 * (total - null) / (perfect - null), where the null detector
  (never detects) scores -fnWeight per window and the perfect one tpWeight per window.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PROBATION_PERCENT = 0.15
DEFAULT_NAB_DIR = Path(os.environ.get("CUMULO_NAB_DIR", Path(__file__).resolve().parents[2] / "shared" / "nab"))

_OUTSIDE = -1
_PROBATION = -2


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid: 1 well before a window's end, 0 at it, -1 well after (>3 widths)."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


def probation_length(n: int, percent: float = PROBATION_PERCENT) -> float:
    """Points at the start of a series that are not scored (NAB: capped at 15 % of 5000 points)."""
    return min(math.floor(percent * n), percent * 5000)


@dataclass(frozen=True)
class Weights:
    tp: float
    fp: float
    fn: float


def load_profiles(nab_dir: Path = DEFAULT_NAB_DIR) -> dict[str, Weights]:
    raw = json.loads((Path(nab_dir) / "config" / "profiles.json").read_text())
    return {name: Weights(tp=float(p["CostMatrix"]["tpWeight"]), fp=float(p["CostMatrix"]["fpWeight"]),
                          fn=float(p["CostMatrix"]["fnWeight"])) for name, p in raw.items()}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def load_windows(nab_dir: Path = DEFAULT_NAB_DIR) -> dict[str, list[tuple[datetime, datetime]]]:
    """{"category/series.csv": [(start, end), ...]} from labels/combined_windows.json."""
    raw = json.loads((Path(nab_dir) / "labels" / "combined_windows.json").read_text())
    return {key: [(parse_time(a), parse_time(b)) for a, b in windows] for key, windows in raw.items()}


@dataclass
class SweptSeries:
    """One series prepared for scoring: per point, its anomaly score, the window it lies in (an index
    into the corpus' windows, _OUTSIDE or _PROBATION) and its unweighted sweep value."""
    key: str
    scores: np.ndarray
    window: np.ndarray
    unweighted: np.ndarray
    n_windows: int  # windows with at least one scored point


def sweep(key: str, timestamps: list[datetime], scores: list[float] | np.ndarray,
          windows: list[tuple[datetime, datetime]]) -> SweptSeries:
    """Assign each point its window and its unweighted NAB value (sigma of its position)."""
    n = len(timestamps)
    if len(scores) != n:
        raise ValueError(f"{key}: {n} timestamps but {len(scores)} anomaly scores")
    score_arr = np.asarray(scores, dtype=float)
    if not np.all(np.isfinite(score_arr)):
        raise ValueError(f"{key}: anomaly_score has NaN or infinite values")
    window = np.full(n, _OUTSIDE, dtype=np.int64)
    unweighted = np.full(n, -1.0)
    probation = probation_length(n)
    bounds = []
    for start, end in windows:
        left = bisect.bisect_left(timestamps, start)
        right = bisect.bisect_right(timestamps, end) - 1
        if left <= right:
            bounds.append((left, right))
    bounds.sort()
    prev_right = prev_width = None
    cursor = 0
    for w, (left, right) in enumerate(bounds + [(n, n)]):
        # points after the previous window (or before any window), up to this window's start
        end = min(left, n)
        if prev_right is not None and end > cursor:
            idx = np.arange(cursor, end)
            pos = np.abs(prev_right - idx) / float(prev_width - 1) if prev_width > 1 else np.full(len(idx), np.inf)
            unweighted[cursor:end] = np.where(pos > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(pos, 3.0))) - 1.0)
        if left >= n:
            break
        width = float(right - left + 1)
        idx = np.arange(left, right + 1)
        pos = -(right - idx + 1) / width
        unweighted[left:right + 1] = 2.0 / (1.0 + np.exp(5.0 * pos)) - 1.0
        window[left:right + 1] = w
        prev_right, prev_width, cursor = right, width, right + 1
    scored = np.arange(n) >= probation
    window[~scored] = _PROBATION
    n_windows = len(set(window[window >= 0].tolist()))
    return SweptSeries(key, score_arr, window, unweighted, n_windows)


@dataclass(frozen=True)
class ProfileResult:
    threshold: float
    raw: float
    null: float
    perfect: float

    @property
    def normalized(self) -> float:
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def _events(series: list[SweptSeries], w: Weights) -> tuple[np.ndarray, np.ndarray, int]:
    """Score changes as the threshold falls: (threshold, delta) pairs, and the window count."""
    thresholds: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    n_windows = 0
    for s in series:
        outside = s.window == _OUTSIDE
        thresholds.append(s.scores[outside])
        deltas.append(w.fp * s.unweighted[outside])
        inside = np.nonzero(s.window >= 0)[0]
        if len(inside) == 0:
            continue
        win = s.window[inside]
        for wid in np.unique(win):
            pts = inside[win == wid]
            n_windows += 1
            # earliest detection at threshold t = first point with score >= t: the prefix-max records
            sc = s.scores[pts]
            run = np.maximum.accumulate(sc)
            rec = np.ones(len(sc), dtype=bool)
            rec[1:] = sc[1:] > run[:-1]
            rec_pts = pts[rec]
            value = w.tp * s.unweighted[rec_pts] / MAX_TP
            before = np.empty_like(value)
            before[:-1] = value[1:]  # a lower threshold reaches an earlier record
            before[-1] = -w.fn
            thresholds.append(s.scores[rec_pts])
            deltas.append(value - before)
    return np.concatenate(thresholds) if thresholds else np.empty(0), \
        np.concatenate(deltas) if deltas else np.empty(0), n_windows


def score_curve(series: list[SweptSeries], w: Weights) -> tuple[np.ndarray, np.ndarray, int]:
    """The corpus total at every threshold that changes it, highest threshold first."""
    th, de, n_windows = _events(series, w)
    base = -w.fn * n_windows
    order = np.argsort(-th, kind="stable")
    th, de = th[order], de[order]
    total = base + np.cumsum(de)
    last = np.ones(len(th), dtype=bool)
    last[:-1] = th[:-1] != th[1:]
    return np.concatenate([[1.1], th[last]]), np.concatenate([[base], total[last]]), n_windows


def optimize(series: list[SweptSeries], w: Weights) -> ProfileResult:
    """NAB's threshold optimisation: the best corpus total (the highest threshold among ties)."""
    thresholds, totals, n_windows = score_curve(series, w)
    best = int(np.argmax(totals))  # first maximum = highest threshold
    return ProfileResult(float(thresholds[best]), float(totals[best]), -w.fn * n_windows, w.tp * n_windows)


def score_at(series: list[SweptSeries], w: Weights, threshold: float) -> ProfileResult:
    """The corpus total with a fixed threshold (detections: score >= threshold)."""
    thresholds, totals, n_windows = score_curve(series, w)
    reached = np.nonzero(thresholds >= threshold)[0]
    raw = float(totals[reached[-1]]) if len(reached) else float(totals[0])
    return ProfileResult(float(threshold), raw, -w.fn * n_windows, w.tp * n_windows)


def read_result_file(path: Path) -> tuple[list[datetime], list[float]]:
    """A NAB results CSV: only its `timestamp` and `anomaly_score` columns are read."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        try:
            ti, si = header.index("timestamp"), header.index("anomaly_score")
        except ValueError:
            raise ValueError(f"{path}: needs `timestamp` and `anomaly_score` columns, has {header}") from None
        ts, sc = [], []
        for row in reader:
            if not row:
                continue
            ts.append(parse_time(row[ti]))
            sc.append(float(row[si]))
    return ts, sc


def find_result_files(results_dir: Path, keys) -> dict[str, Path]:
    """Map each label key "category/series.csv" to DIR/category/[<detector>_]series.csv."""
    results_dir = Path(results_dir)
    found: dict[str, Path] = {}
    by_category: dict[str, set[str]] = {}
    for key in keys:
        cat, name = key.split("/", 1)
        by_category.setdefault(cat, set()).add(name)
    for cat, names in by_category.items():
        folder = results_dir / cat
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.csv")):
            fname = path.name
            candidates = [fname] + [fname[i + 1:] for i, ch in enumerate(fname) if ch == "_"]
            for cand in candidates:  # longest suffix first
                if cand in names:
                    found.setdefault(f"{cat}/{cand}", path)
                    break
    missing = sorted(set(keys) - set(found))
    if missing:
        raise FileNotFoundError(f"{results_dir}: no results for {len(missing)} series, e.g. {missing[:3]}")
    return found


def score_directory(results_dir: Path, nab_dir: Path = DEFAULT_NAB_DIR) -> dict:
    """Score a folder laid out like NAB's results/<detector>/ on the three profiles."""
    windows = load_windows(nab_dir)
    files = find_result_files(Path(results_dir), windows.keys())
    swept = []
    for key in sorted(files):
        ts, sc = read_result_file(files[key])
        swept.append(sweep(key, ts, sc, windows[key]))
    return score_series(swept, load_profiles(nab_dir))


def score_series(swept: list[SweptSeries], profiles: dict[str, Weights],
                 thresholds: dict[str, float] | None = None) -> dict:
    """Per profile: normalized score, raw total and threshold (optimised, or the given ones)."""
    out = {}
    for name in PROFILES:
        w = profiles[name]
        r = optimize(swept, w) if thresholds is None else score_at(swept, w, thresholds[name])
        out[name] = {"score": round(r.normalized, 3), "raw": round(r.raw, 6), "threshold": r.threshold}
    return out
