from hypothesis import given
from hypothesis import strategies as st

from cumulo.policy.backoff import backoff_delay
from cumulo.policy.capacity import Allocation, Capacity, Request, allocate, never_fits

GiB = 2**30
NODE = Capacity(cpu=8, memory=32 * GiB, gpus=(0, 1, 2, 3))


def test_fits_and_assigns_distinct_gpus_per_worker():
    a = allocate(Request(cpu=2, memory=4 * GiB, gpu=1, workers=2), NODE, [])
    assert isinstance(a, Allocation)
    assert a.cpu == 4 and a.memory == 8 * GiB and a.worker_gpus == ((0,), (1,))


def test_skips_gpus_in_use():
    used = [Allocation(cpu=1, memory=GiB, worker_gpus=((0, 1),))]
    a = allocate(Request(cpu=1, memory=GiB, gpu=2), NODE, used)
    assert isinstance(a, Allocation) and a.gpus == (2, 3)


def test_waits_with_reason_naming_what_is_short():
    used = [Allocation(cpu=7, memory=GiB)]
    why = allocate(Request(cpu=2, memory=GiB, gpu=0), NODE, used)
    assert why == "waiting for resources: needs 2 CPU (1 free)"


def test_never_fits_mentions_machine_capacity():
    why = never_fits(Request(cpu=4, memory=GiB, gpu=1, workers=4), NODE)
    assert why == "asks for 16 CPU (4 workers) but this machine has 8 CPU, 32Gi memory, 4 GPU in total"
    assert never_fits(Request(cpu=8, memory=32 * GiB, gpu=4), NODE) is None


def test_allocation_round_trips_as_json():
    a = Allocation(cpu=1.5, memory=3, worker_gpus=((1,), (2,)))
    assert Allocation.from_dict(a.to_dict()) == a


requests = st.builds(
    Request,
    cpu=st.sampled_from([0.5, 1, 2, 3]),
    memory=st.integers(1, 8) .map(lambda g: g * GiB),
    gpu=st.integers(0, 2),
    workers=st.integers(1, 3),
)


@given(st.lists(requests, max_size=12))
def test_greedy_allocations_never_exceed_the_node(reqs):
    used: list[Allocation] = []
    for r in reqs:
        a = allocate(r, NODE, used)
        if isinstance(a, Allocation):
            used.append(a)
    assert sum(a.cpu for a in used) <= NODE.cpu + 1e-9
    assert sum(a.memory for a in used) <= NODE.memory
    gpus = [g for a in used for g in a.gpus]
    assert len(gpus) == len(set(gpus)) and set(gpus) <= set(NODE.gpus)


@given(requests)
def test_what_never_fits_is_never_allocated(r):
    if never_fits(r, NODE):
        assert isinstance(allocate(r, NODE, []), str)
    else:
        assert isinstance(allocate(r, NODE, []), Allocation)


def test_backoff_table():
    assert [backoff_delay(n, initial=1, factor=2, maximum=10) for n in range(0, 7)] == [0, 1, 2, 4, 8, 10, 10]


@given(st.integers(0, 10_000), st.floats(0, 100), st.floats(1, 10), st.floats(0, 1000))
def test_backoff_is_bounded_and_monotone(n, initial, factor, maximum):
    d = backoff_delay(n, initial=initial, factor=factor, maximum=maximum)
    assert 0 <= d <= max(maximum, 0)
    assert backoff_delay(n + 1, initial=initial, factor=factor, maximum=maximum) >= d
