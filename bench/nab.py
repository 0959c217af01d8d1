"""NAB (the Numenta Anomaly Benchmark) for cumulo's anomaly detection; prints one JSON object.

    python bench/nab.py --score DIR      # score a folder laid out like NAB's results/<detector>/
    nice -n 10 python bench/nab.py       # run cumulo's level detector over the 58 series and score it
    nice -n 10 python bench/nab.py --fit 120   # random search (seed 7) on the fit half, then score;
                                               # also the swapped fold (search on the report half)

The data, labels and profiles come from ../shared/nab/ (or $CUMULO_NAB_DIR); NAB is MIT, (c) Numenta
(A. Lavin and S. Ahmad, ICMLA 2015, arXiv:1510.03336). The scoring is in bench/nab_scoring.py.

Honesty: parameters are chosen on a fixed half of the corpus (the "fit" half: within each category,
files in sorted order, every other one starting with the first) and reported on the other half
("report") with the fit half's thresholds, as well as on all 58 series the way NAB scores every
published detector (threshold optimised per profile over the corpus).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import asdict
from datetime import timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import nab_scoring as ns  # noqa: E402

from cumulo.policy.anomaly.level import NAB_PARAMS, LevelParams, LevelState, run_level  # noqa: E402

# The parameters chosen on the fit half (see docs/benchmarks/operations.md).
CHOSEN = NAB_PARAMS


def sample_params(rng: random.Random) -> LevelParams:
    """One random configuration of the search `--fit` runs (log-uniform rates, a few discrete choices)."""
    def lu(a: float, b: float) -> float:
        return math.exp(rng.uniform(math.log(a), math.log(b)))
    season_s, bins = rng.choice([(0.0, 24), (86400.0, 24), (604800.0, 168)])
    kw = dict(alpha=lu(0.003, 0.05), fast=lu(0.05, 0.5), slow=lu(0.0005, 0.01), z_cap=rng.choice([10.0, 20.0, 40.0]),
              season_s=season_s, season_bins=bins, season_alpha=lu(0.02, 0.2),
              cooldown=rng.choice([60, 100, 150, 200, 300]), fire_score=rng.uniform(0.2, 0.6),
              decay=rng.choice([0.999, 0.9995, 0.9998]), ratio_full=rng.choice([3.0, 10.0, 30.0]),
              hist_fast=lu(0.1, 1.0), hist_per_sd=rng.choice([1.5, 2.0, 3.0]), hist_decay=rng.choice([0.999, 0.9995]),
              hist_alpha=lu(0.0003, 0.003))
    return LevelParams(**kw)


def load_corpus(nab_dir: Path) -> dict[str, tuple[list, list[float], list[float]]]:
    """{key: (datetimes, epoch seconds, values)} for the 58 series."""
    out = {}
    windows = ns.load_windows(nab_dir)
    for key in sorted(windows):
        with open(Path(nab_dir) / "data" / key, newline="") as f:
            rows = list(csv.DictReader(f))
        ts = [ns.parse_time(r["timestamp"]) for r in rows]
        secs = [t.replace(tzinfo=timezone.utc).timestamp() for t in ts]
        out[key] = (ts, secs, [float(r["value"]) for r in rows])
    return out


def split(keys) -> tuple[list[str], list[str]]:
    """The fixed fit/report split: within each category, alternate files in sorted order."""
    fit, report = [], []
    for _cat, group in itertools.groupby(sorted(keys), key=lambda k: k.split("/")[0]):
        for i, key in enumerate(group):
            (fit if i % 2 == 0 else report).append(key)
    return fit, report


def detect(params: LevelParams, corpus, keys) -> tuple[dict[str, list[float]], float, int]:
    """Run the detector over each series from a fresh state: scores, seconds spent, points."""
    out, spent, points = {}, 0.0, 0
    for key in keys:
        _ts, secs, values = corpus[key]
        t0 = time.process_time()
        _state, scores, _fired = run_level(params, LevelState(), secs, values)
        spent += time.process_time() - t0
        points += len(values)
        out[key] = scores
    return out, spent, points


def swept(corpus, windows, scores) -> list[ns.SweptSeries]:
    return [ns.sweep(k, corpus[k][0], scores[k], windows[k]) for k in sorted(scores)]


def fit(corpus, windows, profiles, fit_keys, trials: int, seed: int = 7) -> tuple[LevelParams, list[dict]]:
    """Random search on the fit half only (the current parameters are the first candidate); the
    standard profile's optimised score decides."""
    rng = random.Random(seed)
    log = []
    best, best_score = None, -1e9
    for i in range(trials + 1):
        params = CHOSEN if i == 0 else sample_params(rng)
        scores, _, _ = detect(params, corpus, fit_keys)
        std = ns.score_series(swept(corpus, windows, scores), profiles)["standard"]["score"]
        log.append({"params": asdict(params), "fit_standard": std})
        print(json.dumps(log[-1]), file=sys.stderr, flush=True)
        if std > best_score:
            best, best_score = params, std
    return best, log


def by_category(series: list[ns.SweptSeries], w: ns.Weights, threshold: float) -> dict:
    """Where the score comes from at one threshold: per NAB category, windows detected and missed,
    the mean value of a detection (1 = at the window's start) and the false positives' count and cost."""
    out: dict[str, dict] = {}
    for s in series:
        c = out.setdefault(s.key.split("/")[0], {"series": 0, "windows": 0, "detected": 0, "missed": 0,
                                                 "detection_value_sum": 0.0, "false_positives": 0, "fp_cost": 0.0})
        det = s.scores >= threshold
        fp = det & (s.window == -1)
        c["series"] += 1
        c["false_positives"] += int(fp.sum())
        c["fp_cost"] += float((w.fp * s.unweighted[fp]).sum())
        for wid in sorted(set(s.window[s.window >= 0].tolist())):
            idx = (s.window == wid).nonzero()[0]
            hits = idx[det[idx]]
            c["windows"] += 1
            if len(hits):
                c["detected"] += 1
                c["detection_value_sum"] += float(s.unweighted[hits[0]] / ns.MAX_TP)
            else:
                c["missed"] += 1
    for c in out.values():
        total = c.pop("detection_value_sum")
        c["mean_detection_value"] = round(total / c["detected"], 3) if c["detected"] else None
        c["fp_cost"] = round(c["fp_cost"], 3)
    return out


def write_results(out_dir: Path, corpus, scores) -> None:
    """Write NAB-layout results (timestamp, value, anomaly_score) so `--score` can re-check them."""
    for key, sc in scores.items():
        cat, name = key.split("/", 1)
        path = out_dir / cat / f"cumulo_{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        ts, _secs, values = corpus[key]
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for t, v, s in zip(ts, values, sc):
                w.writerow([t.strftime("%Y-%m-%d %H:%M:%S"), repr(v), repr(s)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--score", type=Path, help="score a NAB-layout results folder and exit")
    ap.add_argument("--nab", type=Path, default=ns.DEFAULT_NAB_DIR, help="NAB folder (data, labels, config)")
    ap.add_argument("--fit", type=int, metavar="N", help="random search of N configurations on the fit half first")
    ap.add_argument("--params", type=str, help="JSON object of LevelParams fields to use instead")
    ap.add_argument("--write", type=Path, help="also write NAB-layout results here")
    args = ap.parse_args()

    if args.score:
        print(json.dumps(ns.score_directory(args.score, args.nab), indent=2))
        return

    corpus = load_corpus(args.nab)
    windows = ns.load_windows(args.nab)
    profiles = ns.load_profiles(args.nab)
    fit_keys, report_keys = split(corpus)
    trials = None
    params = CHOSEN
    if args.params:
        params = LevelParams(**json.loads(args.params))
    swapped = None
    if args.fit:
        params, trials = fit(corpus, windows, profiles, fit_keys, args.fit)
        # the other fold of a 2-fold cross-validation: the same search on the report half, scored on
        # the fit half with the report half's thresholds (a second held-out estimate)
        other, _ = fit(corpus, windows, profiles, report_keys, args.fit)
        o_scores, _, _ = detect(other, corpus, sorted(corpus))
        o_rep = ns.score_series(swept(corpus, windows, {k: o_scores[k] for k in report_keys}), profiles)
        swapped = {
            "params": asdict(other),
            "report_half_own": o_rep,
            "fit_half_with_report_thresholds": ns.score_series(
                swept(corpus, windows, {k: o_scores[k] for k in fit_keys}), profiles,
                {p: o_rep[p]["threshold"] for p in ns.PROFILES}),
        }

    scores, spent, points = detect(params, corpus, sorted(corpus))
    all_swept = swept(corpus, windows, scores)
    all_result = ns.score_series(all_swept, profiles)
    fit_result = ns.score_series(swept(corpus, windows, {k: scores[k] for k in fit_keys}), profiles)
    fit_thresholds = {p: fit_result[p]["threshold"] for p in ns.PROFILES}
    report_swept = swept(corpus, windows, {k: scores[k] for k in report_keys})
    out = {
        "detector": "cumulo.policy.anomaly.level",
        "params": asdict(params),
        "all_58": all_result,
        "all_58_standard_by_category": by_category(all_swept, profiles["standard"], all_result["standard"]["threshold"]),
        "fit_half": {"series": len(fit_keys), **fit_result},
        "report_half_fit_thresholds": {"series": len(report_keys),
                                       **ns.score_series(report_swept, profiles, fit_thresholds)},
        "report_half_own_thresholds": ns.score_series(report_swept, profiles),
        "points": points,
        "detector_cpu_s": round(spent, 3),
        "points_per_s_one_core": round(points / spent) if spent > 0 else None,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count()},
        "split": {"fit": fit_keys, "report": report_keys},
    }
    if trials is not None:
        out["fit_trials"] = trials
        out["swapped_fold"] = swapped
    if args.write:
        write_results(args.write, corpus, scores)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
