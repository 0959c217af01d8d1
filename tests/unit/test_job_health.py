"""A job's health from its own reports (policy/job_health.py) and what the job policy does with it."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.core.specs import parse_spec
from cumulo.core.states import AttemptState, JobState
from cumulo.policy import job_health
from cumulo.policy.jobs import Act, AttemptSnapshot, JobSnapshot, Observed, Phase, StopCause, decide_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def spec(**kw):
    return parse_spec({"kind": "Job", "name": "j", "command": "true", **kw})


def reports(every: float, n: int, *, start: float = 0.0, step0: int = 1, loss=lambda i: 1.0 / (i + 1)):
    """n points one `every` seconds apart (the job's clock), each received as it was sent."""
    p = None
    for i in range(n):
        t = at(start + i * every)
        p = job_health.observe(p, [(step0 + i, t, {"loss": loss(i)})], received_at=t)
    return p


def running_snap(progress, now, s=None, *, stop=None, alerted=None, phase=Phase.RUNNING, code=None):
    cur = AttemptSnapshot(number=1, state=AttemptState.RUNNING, created_at=T0, started_at=T0, stop_cause=stop,
                          stop_requested_at=now if stop else None, progress=progress, alerted=alerted)
    return JobSnapshot(now=now, spec=s or spec(max_retries=1), state=JobState.RUNNING, attempts=1, current=cur,
                       observed=Observed(phase, code))


# -- the progress record -----------------------------------------------------------------------------
def test_cadence_is_learned_from_the_jobs_own_reports_and_auto_waits_three_of_the_longest_at_least_30s():
    health = spec().health
    assert job_health.progress_timeout(health, reports(2.0, 1)) is None  # one report: no cadence yet
    assert job_health.progress_timeout(health, reports(2.0, 10)) == pytest.approx(30.0)  # 3 x 2 s < 30 s
    assert job_health.progress_timeout(health, reports(20.0, 10)) == pytest.approx(60.0)
    slow_once = job_health.observe(reports(2.0, 5), [(6, at(60), {"loss": 0.1})], received_at=at(60))
    assert job_health.progress_timeout(health, slow_once) == pytest.approx(3 * 52.0)  # its longest gap
    assert job_health.progress_timeout(spec(health={"progress_timeout": "5s"}).health, None) == 5.0
    assert job_health.progress_timeout(spec(health={"progress_timeout": None}).health, reports(1, 5)) is None


def test_a_repeated_step_is_not_progress():
    p = reports(1.0, 3)  # steps 1..3 received at 0..2 s
    same = job_health.observe(p, [(3, at(50), {"loss": 0.1})], received_at=at(50))
    assert same["at"] == p["at"] and same["step"] == 3
    on = job_health.observe(p, [(4, at(50), {"loss": 0.1})], received_at=at(50))
    assert on["at"] == at(50).isoformat() and on["step"] == 4


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_loss_is_kept_with_its_step_and_the_first_one_wins(bad):
    p = reports(1.0, 3)
    p = job_health.observe(p, [(4, at(4), {"loss": bad, "accuracy": 0.5})], received_at=at(4))
    p = job_health.observe(p, [(5, at(5), {"val_loss": float("nan")})], received_at=at(5))
    assert p["bad"] == {"metric": "loss", "value": repr(bad), "step": 4}


def test_a_non_finite_metric_that_is_not_a_loss_is_not_judged():
    p = job_health.observe(None, [(1, T0, {"accuracy": float("nan")})], received_at=T0)
    assert "bad" not in p and job_health.assess(spec().health, p, at(1), T0) is None


def test_divergence_is_a_loss_that_stays_far_above_its_best_after_a_warm_up():
    healthy = reports(1.0, 20, loss=lambda i: 2.0 / (i + 1) + 0.01 * (i % 3))  # noisy, falling
    assert "diverged" not in healthy
    spike = job_health.observe(healthy, [(30, at(30), {"loss": 1e6})], received_at=at(30))
    assert "diverged" not in spike  # one bad batch is not a divergence
    p = spike
    for i in range(31, 34):
        p = job_health.observe(p, [(i, at(i), {"loss": 1e6})], received_at=at(i))
    v = job_health.assess(spec().health, p, at(34), T0)
    assert v.kind == "diverged" and "step 32" in v.message, v
    # the same jumps during the warm-up (the first losses of a run swing widely) are not judged
    early = reports(1.0, 6, loss=lambda i: 1.0 if i < 2 else 1e6)
    assert "diverged" not in early


@given(st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=1, max_size=200),
       st.floats(min_value=0.01, max_value=100))
def test_the_record_stays_a_handful_of_numbers_and_never_judges_a_bounded_loss_within_10x(losses, every):
    lo = min(losses)
    p = reports(every, len(losses), loss=lambda i: min(losses[i], lo * 10))
    assert len(p) <= 10 and len(p["cadence"]["intervals"]) <= 8 and "bad" not in p and "diverged" not in p
    assert p["reports"] == len(losses)


# -- what the job policy does ---------------------------------------------------------------------
def test_a_stalled_attempt_is_stopped_then_retried_and_says_why():
    p = reports(1.0, 5)  # last progress at 4 s, step 5
    s = spec(max_retries=1, health={"progress_timeout": "10s"})
    assert decide_job(running_snap(p, at(13.9), s)).act == Act.NONE
    d = decide_job(running_snap(p, at(14.5), s))
    assert d.act == Act.STOP and d.stop_cause == StopCause.STALLED
    assert d.events[0][1] == "Stalled" and "no progress for 10s since step 5" in d.events[0][2]
    d = decide_job(running_snap(p, at(20), s, stop=StopCause.STALLED, phase=Phase.EXITED, code=143))
    assert d.state == JobState.PENDING and d.attempt_state == AttemptState.FAILED
    assert "stalled: no progress after step 5" in d.attempt_reason


def test_a_running_attempt_is_looked_at_again_when_its_stall_deadline_comes():
    s = spec(health={"progress_timeout": "10s"})
    d = decide_job(running_snap(reports(1.0, 5), at(13.95), s))
    assert d.act == Act.NONE and d.requeue_after == pytest.approx(0.06)


def test_auto_never_stalls_a_job_that_does_not_report():
    d = decide_job(running_snap(None, at(10_000)))
    assert d.act == Act.NONE


def test_an_explicit_timeout_counts_from_the_start_of_a_job_that_never_reported():
    d = decide_job(running_snap(None, at(31), spec(health={"progress_timeout": "30s"})))
    assert d.act == Act.STOP and "since its start" in d.events[0][2]


def test_a_nan_loss_fails_the_job_without_retry_by_default():
    p = job_health.observe(reports(1.0, 3), [(4, at(4), {"loss": float("nan")})], received_at=at(4))
    s = spec(max_retries=5)
    d = decide_job(running_snap(p, at(4), s))
    assert d.act == Act.STOP and d.stop_cause == StopCause.NAN and d.events[0][1] == "LossNotFinite"
    d = decide_job(running_snap(p, at(5), s, stop=StopCause.NAN, phase=Phase.EXITED, code=143))
    assert d.state == JobState.FAILED and d.attempt_reason == "loss is nan at step 4"
    assert "not retried" in d.reason


def test_on_nan_restart_retries_and_on_nan_alert_tells_once_and_lets_it_run():
    p = job_health.observe(reports(1.0, 3), [(4, at(4), {"loss": float("inf")})], received_at=at(4))
    restart = spec(max_retries=1, health={"on_nan": "restart"})
    d = decide_job(running_snap(p, at(5), restart, stop=StopCause.NAN, phase=Phase.EXITED, code=143))
    assert d.state == JobState.PENDING and "loss is inf at step 4" in d.reason
    alert = spec(health={"on_nan": "alert"})
    d = decide_job(running_snap(p, at(4), alert))
    assert d.act == Act.NONE and d.attempt_alerted == "nan" and d.events[0][1] == "LossNotFinite"
    again = decide_job(running_snap(p, at(5), alert, alerted="nan"))
    assert again.act == Act.NONE and again.events == () and again.attempt_alerted is None


def test_on_stall_alert_does_not_stop():
    p = reports(1.0, 5)
    d = decide_job(running_snap(p, at(100), spec(health={"progress_timeout": "10s", "on_stall": "alert"})))
    assert d.act == Act.NONE and d.attempt_alerted == "stalled"


def test_a_cancel_in_progress_wins_over_a_health_verdict():
    p = job_health.observe(None, [(1, T0, {"loss": float("nan")})], received_at=T0)
    snap = replace(running_snap(p, at(1), stop=StopCause.CANCEL), cancel_requested=True)
    assert decide_job(snap).act == Act.NONE  # already stopping for the cancel


@pytest.mark.parametrize("bad", [{"progress_timeout": "0s"}, {"progress_timeout": "later"}, {"on_stall": "fail"},
                                 {"on_nan": "ignore"}, {"progress_timeout": -5}])
def test_bad_health_specs_name_the_field(bad):
    with pytest.raises(Exception) as e:
        spec(health=bad)
    assert "health" in str(e.value)
