"""What the control plane keeps of standalone gateways' reports (fake clock, no store needed)."""

from __future__ import annotations

from cumulo.services.gateways import Counters, GatewayRegistry, GatewayReport

A = ("127.0.0.1", 9001)


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


def report(gid, arrivals, in_flight=0, busy=None, routed=()):
    return GatewayReport(gid, {"m": Counters(arrivals_total=arrivals, requests_total=arrivals - in_flight,
                                             in_flight=in_flight)},
                         in_flight=busy or {}, routed=frozenset(routed))


def test_totals_sum_each_gateways_growth_and_never_go_back():
    clock = Clock()
    reg = GatewayRegistry(None, ttl=5.0, clock=clock)
    reg.record(report("g1", 0))
    reg.record(report("g2", 0))
    reg.record(report("g1", 10, in_flight=2))
    reg.record(report("g2", 5, in_flight=1))
    t = reg.totals("m")
    assert (t.arrivals_total, t.in_flight) == (15, 3)
    reg.record(report("g1", 3))  # g1 restarted under the same id: its 3 new arrivals count
    assert reg.totals("m").arrivals_total == 18
    clock.t += 6  # both silent longer than the ttl: dropped, their in flight no longer counts
    t = reg.totals("m")
    assert (t.arrivals_total, t.in_flight) == (18, 0) and reg.live() == []
    reg.record(report("g2", 500))  # back after being dropped: a baseline, not a burst of 495
    reg.record(report("g2", 504))
    assert reg.totals("m").arrivals_total == 22


def test_a_gateway_holds_an_address_while_it_routes_there_was_sent_it_or_has_requests_there():
    clock = Clock()
    reg = GatewayRegistry(None, ttl=5.0, clock=clock)
    reg.record(report("g1", 0, routed=[A]), handed=frozenset({A}))
    assert reg.in_flight_to(*A) == 2  # routes there and was sent routes that do
    reg.record(report("g1", 0, routed=[A]), handed=frozenset())  # the replica left the routes
    assert reg.in_flight_to(*A) == 1  # it has not applied them yet
    reg.record(report("g1", 0, busy={A: 2}), handed=frozenset())
    assert reg.in_flight_to(*A) == 2  # applied: two requests still there
    reg.record(report("g1", 0, busy={}), handed=frozenset())
    assert reg.in_flight_to(*A) == 0
    reg.record(report("g1", 0, busy={A: 1}))
    clock.t += 6
    assert reg.in_flight_to(*A) == 0  # a gateway gone silent holds nothing
