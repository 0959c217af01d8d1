"""Each baseline reproduces its documented behaviour on small hand-made loads."""

from __future__ import annotations

import pytest

from cumulo.core.errors import InvalidSpec
from cumulo.policy.autoscaling import hpa, kpa, rayserve, skyserve
from cumulo.policy.autoscaling.hpa import HPAConfig
from cumulo.policy.autoscaling.kpa import KPAConfig
from cumulo.policy.autoscaling.rayserve import RayServeConfig
from cumulo.policy.autoscaling.skyserve import SkyServeConfig

from .helpers import drive, inp

# ---------------------------------------------------------------- Kubernetes HPA


@pytest.mark.parametrize(
    ("ready", "conc", "want", "why"),
    [
        (4, 40.0, 4, "exactly on target"),
        (4, 43.0, 4, "ratio 1.075 inside the 0.1 tolerance"),
        (4, 36.5, 4, "ratio 0.91 inside the tolerance"),
        (4, 60.0, 6, "ratio 1.5: ceil(4 * 1.5)"),
        (4, 200.0, 8, "x5 wanted, default behavior caps a step at max(+100 %, +4)"),
        (10, 200.0, 20, "x2 allowed from 10"),
        (2, 200.0, 6, "+4 pods beats +100 % from 2"),
    ],
)
def test_hpa_formula_tolerance_and_rate_limits(ready, conc, want, why):
    d = hpa.decide(inp(15.0, conc=conc, ready=ready, target_concurrency=10.0), HPAConfig())
    assert d.desired == want, why


def test_hpa_waits_for_its_sync_period():
    d1 = hpa.decide(inp(15.0, conc=60.0, ready=4), HPAConfig())
    d2 = hpa.decide(inp(20.0, conc=200.0, ready=6, state=d1.state), HPAConfig())
    assert (d1.desired, d2.desired) == (6, 6)
    assert "waiting" in d2.reason


def test_hpa_scale_down_waits_for_the_five_minute_stabilization_window():
    loads = [(0.0, 80.0)] * 2 + [(0.0, 10.0)] * 40  # 8 replicas' worth, then 1
    out = drive(hpa.decide, HPAConfig(), loads, step=15.0, replicas=8)
    downs = [(t, n) for t, n, _ in out if n < 8]
    assert downs, "it must scale down eventually"
    # the last high recommendation was at t=30; it holds until the window has passed
    assert downs[0][0] > 30 + 300 - 1e-9
    assert downs[0][1] == 1
    assert "stabilization" in out[5][2]


def test_hpa_starting_replicas_count_as_zero_for_a_scale_up():
    # 4 ready at ratio 1.5 would ask for 6; with 2 starting (counted at 0 %) the 6 already asked cover it
    d = hpa.decide(inp(15.0, conc=60.0, ready=4, starting=2, target_concurrency=10.0), HPAConfig())
    assert d.desired == 6


# ---------------------------------------------------------------- Knative KPA


def test_kpa_stable_mode_follows_the_60s_average():
    d = kpa.decide(inp(2.0, conc=35.0, ready=3, target_concurrency=10.0), KPAConfig())
    assert d.desired == 4
    assert "stable" in d.reason


def test_kpa_panics_at_twice_the_ready_capacity_and_never_scales_down_while_panicking():
    # stable window quiet, last 6 s at 50 concurrent against 2 ready x 10 -> 5 >= 2 x 2: panic
    conc = [10.0] * 54 + [50.0] * 6
    d = kpa.decide(inp(2.0, conc=conc, ready=2, target_concurrency=10.0), KPAConfig())
    assert d.desired == 5
    assert "panic" in d.reason
    # the burst goes away: still panicking (inside 60 s), so no scale down
    d2 = kpa.decide(inp(4.0, conc=[10.0] * 60, ready=5, target_concurrency=10.0, state=d.state), KPAConfig())
    assert d2.desired == 5
    # one stable window later panic ends and the stable answer (1) wins, halving at most
    d3 = kpa.decide(inp(70.0, conc=[10.0] * 60, ready=5, target_concurrency=10.0, state=d2.state), KPAConfig())
    assert "leaving panic" in d3.reason
    assert d3.desired == 2  # floor(5 / max-scale-down-rate 2)


def test_kpa_max_scale_down_rate_halves_at_most_per_tick():
    d = kpa.decide(inp(2.0, conc=1.0, ready=10, target_concurrency=10.0), KPAConfig())
    assert d.desired == 5


def test_kpa_scales_to_zero_only_after_the_grace_period():
    cfg = KPAConfig()
    out = drive(kpa.decide, cfg, [(0.0, 0.0)] * 40, step=2.0, replicas=1, min_replicas=0)
    first_zero = next(t for t, n, _ in out if n == 0)
    assert first_zero >= cfg.scale_to_zero_grace


# ---------------------------------------------------------------- Ray Serve


def test_rayserve_upscales_after_30s_of_consecutive_asks():
    out = drive(rayserve.decide, RayServeConfig(), [(0.0, 40.0)] * 40, replicas=2, target_concurrency=2.0)
    ups = [(t, n) for t, n, _ in out if n > 2]
    assert ups[0] == (30.0, 20)  # ceil(2 * 40 / (2 * 2))


def test_rayserve_downscales_after_600s_and_a_reversal_resets_the_count():
    loads = [(0.0, 2.0)] * 300 + [(0.0, 40.0)] * 5 + [(0.0, 2.0)] * 700
    out = drive(rayserve.decide, RayServeConfig(), loads, replicas=4, target_concurrency=2.0)
    downs = [t for t, n, _ in out if n < 4]
    assert downs[0] == pytest.approx(305 + 600, abs=1)  # counted again from the reversal


def test_rayserve_scales_from_zero_at_once():
    d = rayserve.decide(inp(1.0, conc=3.0, ready=0, min_replicas=0, target_concurrency=2.0, state=rayserve.RayServeState(target=0)), RayServeConfig())
    assert d.desired == 1


# ---------------------------------------------------------------- SkyServe


def test_skyserve_needs_15_consecutive_decisions_to_scale_up():
    out = drive(skyserve.decide, SkyServeConfig(), [(50.0, 0.0)] * 20, step=20.0, replicas=1, target_rps=10.0)
    ups = [(t, n) for t, n, _ in out if n > 1]
    assert ups[0] == (300.0, 5)


def test_skyserve_needs_60_consecutive_decisions_to_scale_down():
    out = drive(skyserve.decide, SkyServeConfig(), [(10.0, 0.0)] * 70, step=20.0, replicas=5, target_rps=10.0)
    downs = [(t, n) for t, n, _ in out if n < 5]
    assert downs[0] == (1200.0, 1)


def test_skyserve_scales_from_zero_at_once():
    st = skyserve.SkyServeState(target=0)
    d = skyserve.decide(inp(20.0, rate=5.0, ready=0, min_replicas=0, target_rps=2.0, state=st), SkyServeConfig())
    assert d.desired == 3


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"min_replicas": 5, "max_replicas": 2}, "max_replicas"),
        ({"min_replicas": -1}, "min_replicas"),
        ({"target_concurrency": -1.0}, "target_concurrency"),
        ({"target_rps": 0.0}, "target_rps"),
    ],
)
def test_impossible_settings_are_rejected_naming_the_field(kw, field):
    for decide in (hpa.decide, kpa.decide, rayserve.decide, skyserve.decide):
        with pytest.raises(InvalidSpec) as e:
            decide(inp(15.0, **kw), None or _default(decide))
        assert e.value.errors[0]["field"] == field


def _default(decide):
    return {hpa.decide: HPAConfig(), kpa.decide: KPAConfig(), rayserve.decide: RayServeConfig(), skyserve.decide: SkyServeConfig()}[decide]


def test_config_errors_name_the_field():
    with pytest.raises(InvalidSpec, match="sync_period"):
        HPAConfig(sync_period=0)
    with pytest.raises(InvalidSpec, match="max_scale_down_rate"):
        KPAConfig(max_scale_down_rate=1)
