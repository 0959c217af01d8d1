"""bench/nab_scoring.py: NAB's scoring, checked three ways.

1. Against a literal, point-by-point transcription of NAB's sweeper (below) on random detectors.
2. The null detector scores 0 and a perfect one 100 on every profile (NAB's normalisation).
3. The published raw outputs of Windowed Gaussian (../shared/nab/results/) score 39.6 / 20.9 / 47.4.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("nab_scoring", ROOT / "bench" / "nab_scoring.py")
ns = importlib.util.module_from_spec(_spec)
sys.modules["nab_scoring"] = ns
_spec.loader.exec_module(ns)

NAB = ns.DEFAULT_NAB_DIR
needs_nab = pytest.mark.skipif(not (NAB / "labels" / "combined_windows.json").is_file(),
                               reason=f"NAB data not found at {NAB} (set CUMULO_NAB_DIR)")
PUBLISHED_WG = {"standard": 39.6, "reward_low_FP_rate": 20.9, "reward_low_FN_rate": 47.4}
PROFILES = {"standard": ns.Weights(1.0, 0.11, 1.0), "reward_low_FP_rate": ns.Weights(1.0, 0.22, 1.0),
            "reward_low_FN_rate": ns.Weights(1.0, 0.11, 2.0)}


def reference_total(series, w: ns.Weights, threshold: float) -> float:
    """NAB's sweeper, point by point: windows entered at their first timestamp, scaled sigmoid inside,
    FP value from the previous window's right edge, probationary points skipped, first detection per
    window counts, undetected windows cost fnWeight."""
    total = 0.0
    for timestamps, scores, windows in series:
        n = len(timestamps)
        prob = min(math.floor(0.15 * n), 0.15 * 5000)
        limits = list(windows)
        cur = None
        prev_right = prev_width = None
        hit: dict[int, float] = {}
        seen: set[int] = set()
        wid = -1
        for i, (t, s) in enumerate(zip(timestamps, scores)):
            if limits and t == limits[0][0]:
                cur = limits.pop(0)
                wid += 1
                right = timestamps.index(cur[1])
                width = float(right - i + 1)
            if cur:
                value = w.tp * ns.scaled_sigmoid(-(right - i + 1) / width) / ns.scaled_sigmoid(-1.0)
            elif prev_right is None:
                value = -1.0 * w.fp
            else:
                value = ns.scaled_sigmoid(abs(prev_right - i) / (prev_width - 1)) * w.fp
            if i >= prob:
                if cur:
                    seen.add(wid)
                    if s >= threshold and wid not in hit:
                        hit[wid] = value
                elif s >= threshold:
                    total += value
            if cur and t == cur[1]:
                prev_right, prev_width, cur = i, width, None
        total += sum(hit.values()) - w.fn * (len(seen) - len(hit))
    return total


def synthetic_corpus(rng: np.random.Generator, files: int = 4):
    corpus = []
    for _ in range(files):
        n = int(rng.integers(300, 900))
        t0 = datetime(2020, 1, 1)
        ts = [t0 + timedelta(minutes=5 * i) for i in range(n)]
        k = int(rng.integers(1, 4))
        width = max(4, n // (10 * k))
        starts = sorted(rng.choice(np.arange(int(0.2 * n), n - width - 1, width + 2), size=k, replace=False))
        windows = [(ts[s], ts[s + width - 1]) for s in starts]
        scores = np.round(rng.random(n) ** 3, 2)  # ties on purpose
        corpus.append((ts, scores.tolist(), windows))
    return corpus


@pytest.mark.parametrize("seed", range(6))
def test_matches_pointwise_reference_at_every_threshold(seed):
    rng = np.random.default_rng(seed)
    corpus = synthetic_corpus(rng)
    swept = [ns.sweep(f"s{i}", ts, sc, win) for i, (ts, sc, win) in enumerate(corpus)]
    for w in PROFILES.values():
        thresholds, totals, _ = ns.score_curve(swept, w)
        for th, tot in zip(thresholds, totals):
            assert tot == pytest.approx(reference_total(corpus, w, th), abs=1e-9)
        best = ns.optimize(swept, w)
        brute = max(reference_total(corpus, w, th) for th in sorted({s for _, sc, _ in corpus for s in sc}) + [1.1])
        assert best.raw == pytest.approx(brute, abs=1e-9)


def test_scaled_sigmoid_and_probation():
    assert ns.scaled_sigmoid(-1.0) == pytest.approx(0.98661429815)
    assert ns.scaled_sigmoid(0.0) == 0.0
    assert ns.scaled_sigmoid(3.5) == -1.0
    assert ns.probation_length(4032) == 604
    assert ns.probation_length(22695) == 750.0  # capped at 15 % of 5000


def test_null_and_perfect_on_synthetic_corpus():
    corpus = synthetic_corpus(np.random.default_rng(9))
    null = [ns.sweep(f"s{i}", ts, [0.0] * len(ts), win) for i, (ts, _, win) in enumerate(corpus)]
    perfect = []
    for i, (ts, _, win) in enumerate(corpus):
        sc = [0.0] * len(ts)
        for start, _end in win:
            sc[ts.index(start)] = 1.0
        perfect.append(ns.sweep(f"s{i}", ts, sc, win))
    for w in PROFILES.values():
        assert ns.optimize(null, w).normalized == pytest.approx(0.0)
        assert ns.optimize(perfect, w).normalized == pytest.approx(100.0)


def test_bad_scores_are_refused():
    ts = [datetime(2020, 1, 1) + timedelta(minutes=i) for i in range(10)]
    with pytest.raises(ValueError, match="NaN"):
        ns.sweep("x", ts, [0.0] * 9 + [float("nan")], [])
    with pytest.raises(ValueError, match="timestamps"):
        ns.sweep("x", ts, [0.0] * 9, [])


@needs_nab
def test_reproduces_published_windowed_gaussian():
    got = ns.score_directory(NAB / "results" / "windowedGaussian", NAB)
    published = json.loads((NAB / "results" / "final_results.json").read_text())["windowedGaussian"]
    for profile, rounded in PUBLISHED_WG.items():
        assert got[profile]["score"] == pytest.approx(rounded, abs=0.5)
        assert got[profile]["score"] == pytest.approx(published[profile], abs=0.01)


@needs_nab
@pytest.mark.slow
def test_perfect_and_null_detectors_on_the_real_labels(tmp_path):
    windows = ns.load_windows(NAB)
    for key, wins in windows.items():
        with open(NAB / "data" / key) as f:
            stamps = [line.split(",", 1)[0] for line in f.read().splitlines()[1:]]
        parsed = [ns.parse_time(s) for s in stamps]
        starts = {ns.parse_time(str(a)) for a, _ in wins}
        for name, flag in (("perfect", lambda t: t in starts), ("null", lambda t: False)):
            out = tmp_path / name / key.split("/")[0] / f"{name}_{key.split('/')[1]}"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("timestamp,anomaly_score\n" + "".join(
                f"{s},{1.0 if flag(t) else 0.0}\n" for s, t in zip(stamps, parsed)))
    for name, expected in (("perfect", 100.0), ("null", 0.0)):
        got = ns.score_directory(tmp_path / name, NAB)
        for profile in ns.PROFILES:
            assert got[profile]["score"] == pytest.approx(expected, abs=1e-9), (name, profile)


@needs_nab
@pytest.mark.slow
def test_cli_scores_a_results_folder():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "nab.py"), "--score",
                           str(NAB / "results" / "windowedGaussian")], capture_output=True, text=True, check=True)
    got = json.loads(done.stdout)
    assert {p: round(got[p]["score"], 1) for p in ns.PROFILES} == PUBLISHED_WG
