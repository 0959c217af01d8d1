"""Which cluster a workload runs on (policy/clusters.py): pure, table-driven and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.policy.capacity import Allocation, Capacity, Request
from cumulo.policy.clusters import ClusterView, NodeShape, choose, never_fits_anywhere, still_fits_engine

GiB = 2**30
LOCAL = ClusterView("local", "local", capacity=Capacity(2, 8 * GiB, ()))


def ray(*nodes: NodeShape, name: str = "ray", reachable: bool = True, reason: str = "") -> ClusterView:
    return ClusterView(name, "ray", reachable=reachable, reason=reason, nodes=nodes)


def node(name: str, cpu: float = 2, mem: int = 4 * GiB, gpus: int = 0, **kw) -> NodeShape:
    return NodeShape(name=name, cpu=cpu, memory=mem, gpus=gpus, **kw)


THREE = ray(node("a"), node("b"), node("c"))


def test_local_first_when_it_fits():
    fit = choose(Request(1, GiB, 0), "pack", [LOCAL, THREE], [])
    assert isinstance(fit, Allocation) and fit.cluster == "local"


def test_the_least_loaded_engine_cluster_when_local_is_full():
    busy = ray(node("a"), node("b"), name="busy")
    used = [Allocation(2, GiB), Allocation(2, GiB, cluster="busy")]  # local full, busy half full
    fit = choose(Request(1, GiB, 0), "pack", [LOCAL, busy, THREE], used)
    assert isinstance(fit, Allocation) and fit.cluster == "ray" and fit.cpu == 1 and fit.worker_gpus == ()


def test_spread_needs_as_many_nodes_as_workers():
    assert choose(Request(1, GiB, 0, workers=3), "spread", [LOCAL, THREE], []).cluster == "ray"
    why = choose(Request(1, GiB, 0, workers=4), "spread", [LOCAL, THREE], [])
    assert isinstance(why, str) and "local: placement: spread needs 4 nodes" in why and "ray:" in why
    assert "(one per node) never fit its 3 node(s)" in never_fits_anywhere(Request(1, GiB, 0, workers=4), "spread",
                                                                           [LOCAL, THREE])
    assert never_fits_anywhere(Request(1, GiB, 0, workers=3), "spread", [LOCAL, THREE]) is None


def test_pack_counts_whole_workers_per_node():
    # 3 nodes x 2 CPU = 6 CPU, but workers of 1.5 CPU fit only one per node: 3, never 4
    assert never_fits_anywhere(Request(1.5, GiB, 0, workers=3), "pack", [THREE]) is None
    why = never_fits_anywhere(Request(1.5, GiB, 0, workers=4), "pack", [THREE])
    assert why and "ray:" in why and "never fit its 3 node(s)" in why


def test_an_unreachable_cluster_is_named_in_the_reason_and_never_chosen():
    far = ray(node("a"), name="far", reachable=False, reason="connection refused")
    why = choose(Request(1, GiB, 0), "pack", [far], [], only="far")
    assert isinstance(why, str) and "far: unreachable (connection refused)" in why


def test_a_cluster_whose_nodes_are_unknown_does_not_refuse_at_submit():
    new = ClusterView("new", "ray", reachable=True, nodes=())
    assert never_fits_anywhere(Request(64, GiB, 0), "pack", [LOCAL, ClusterView("x", "ray", reachable=False)]) is None
    assert "has no nodes" in never_fits_anywhere(Request(64, GiB, 0), "pack", [new])


def test_only_names_one_cluster():
    assert choose(Request(1, GiB, 0), "pack", [LOCAL, THREE], [], only="ray").cluster == "ray"
    assert "does not exist" in choose(Request(1, GiB, 0), "pack", [LOCAL], [], only="nope")


def test_cumulos_own_work_and_the_engines_free_view_both_limit():
    used = [Allocation(5, GiB, cluster="ray")]
    why = choose(Request(2, GiB, 0), "pack", [THREE], used, only="ray")
    assert isinstance(why, str) and "2 CPU (1 free)" in why
    tight = ray(node("a", cpu_free=0.5), node("b", cpu_free=0.5))
    why = choose(Request(1, GiB, 0), "pack", [tight], [], only="ray")
    assert isinstance(why, str) and "as they are now" in why


def test_dead_nodes_hold_nothing():
    c = ray(node("a", alive=False), node("b"))
    assert choose(Request(2, GiB, 0), "pack", [c], [], only="ray").cluster == "ray"
    assert isinstance(choose(Request(2, GiB, 0, workers=2), "pack", [c], [], only="ray"), str)


def test_gpu_type_picks_the_nodes_that_have_it():
    mixed = ray(node("t4", gpus=2, gpu_type="T4"), node("a100", gpus=1, gpu_type="NVIDIA A100-SXM4-80GB"))
    assert choose(Request(1, GiB, 1, gpu_type="a100"), "pack", [mixed], [], only="ray").gpu == 1
    assert isinstance(choose(Request(1, GiB, 2, gpu_type="a100"), "pack", [mixed], [], only="ray"), str)
    why = never_fits_anywhere(Request(1, GiB, 1, gpu_type="H100"), "pack", [LOCAL, mixed])
    assert why and "H100" in why and "local: " in why
    local_gpu = ClusterView("local", "local", capacity=Capacity(8, 8 * GiB, (0, 1)), gpu_names=("Tesla T4", "Tesla T4"))
    fit = choose(Request(1, GiB, 1, gpu_type="t4"), "pack", [local_gpu], [])
    assert isinstance(fit, Allocation) and fit.worker_gpus == ((0,),)
    assert "this machine's GPUs are: Tesla T4" in choose(Request(1, GiB, 1, gpu_type="A100"), "pack", [local_gpu], [])


def test_still_fits_engine_rechecks_totals_at_commit():
    assert still_fits_engine([Allocation(2, GiB, cluster="ray")], THREE, [Allocation(4, GiB, cluster="ray")])
    assert not still_fits_engine([Allocation(3, GiB, cluster="ray")], THREE, [Allocation(4, GiB, cluster="ray")])
    assert not still_fits_engine([Allocation(1, GiB, cluster="ray")], ray(node("a"), reachable=False), [])


@given(cpu=st.sampled_from([0.5, 1, 1.5, 2]), workers=st.integers(1, 8), placement=st.sampled_from(["pack", "spread"]),
       used=st.lists(st.sampled_from([0.5, 1, 2]), max_size=6))
def test_what_is_chosen_never_overcommits_and_never_fits_means_never(cpu, workers, placement, used):
    held = [Allocation(u, GiB // 2, cluster="ray") for u in used]
    req = Request(cpu, GiB // 2, 0, workers=workers)
    fit = choose(req, placement, [THREE], held, only="ray")
    if isinstance(fit, Allocation):
        assert sum(a.cpu for a in held) + fit.cpu <= 6 + 1e-9
        assert still_fits_engine([fit], THREE, held)
    if never_fits_anywhere(req, placement, [THREE]) is not None:
        assert not isinstance(choose(req, placement, [THREE], [], only="ray"), Allocation)


@pytest.mark.parametrize("gpu_type, names, ok", [
    (None, [], True), ("a100", ["NVIDIA A100-SXM4-80GB"], True), ("A100", ["T4"], False), ("t4", [None], False),
])
def test_gpu_type_matching(gpu_type, names, ok):
    from cumulo.policy.capacity import gpu_type_matches
    assert gpu_type_matches(gpu_type, names) is ok


def test_slurm_gives_whole_cpus_so_placement_counts_them_whole():
    slurm = ClusterView("hpc", "slurm", nodes=(node("n1"),))  # 2 CPUs
    first = choose(Request(0.1, GiB // 8, 0), "pack", [slurm], [], only="hpc")
    assert isinstance(first, Allocation) and first.cpu == 1  # what Slurm will hold for it
    assert isinstance(choose(Request(0.1, GiB // 8, 0), "pack", [slurm], [first], only="hpc"), Allocation)
    assert isinstance(choose(Request(0.1, GiB // 8, 0), "pack", [slurm], [first, first], only="hpc"), str)
    assert "never fit" in never_fits_anywhere(Request(0.5, GiB // 8, 0, workers=3), "pack", [slurm])
