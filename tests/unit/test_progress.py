"""core/progress.py: steps/s, fraction and ETA from a job's own reports (pure, table-driven)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.core.progress import estimate


@pytest.mark.parametrize("points,total,now,rate,fraction,eta", [
    ([], 100, 10.0, None, None, None),  # nothing reported yet
    ([(0.0, 1)], 100, 10.0, None, 0.01, None),  # one report: no rate yet
    ([(0.0, 0), (10.0, 20)], 100, 10.0, 2.0, 0.2, 40.0),
    ([(0.0, 0), (10.0, 20)], 100, 15.0, 2.0, 0.2, 35.0),  # 5 s since the newest report count
    ([(0.0, 0), (10.0, 20)], None, 10.0, 2.0, None, None),  # no total_steps: no fraction, no ETA
    ([(0.0, 0), (10.0, 100)], 100, 10.0, 10.0, 1.0, 0.0),  # done
    ([(0.0, 0), (100.0, 100), (150.0, 200), (160.0, 220)], 1000, 160.0, 2.0, 0.22, 390.0),  # last 60 s only
    ([(10.0, 20), (0.0, 0), (10.0, 20)], 100, 10.0, 2.0, 0.2, 40.0),  # any order, duplicates
    ([(0.0, 5), (10.0, 5)], 100, 10.0, 0.0, 0.05, None),  # no progress: rate 0, no ETA
])
def test_estimate(points, total, now, rate, fraction, eta):
    p = estimate(points, total, now)
    assert p.steps_per_second == rate
    assert p.fraction == fraction
    assert p.eta_seconds == (None if eta is None else pytest.approx(eta))


@given(st.lists(st.tuples(st.floats(0, 1e6), st.integers(0, 10**9)), max_size=50), st.one_of(st.none(), st.floats(0, 1e9)),
       st.floats(0, 2e6))
def test_bounds(points, total, now):
    p = estimate(points, total, now)
    assert p.steps_per_second is None or p.steps_per_second >= 0
    assert p.fraction is None or 0 <= p.fraction <= 1
    assert p.eta_seconds is None or p.eta_seconds >= 0
