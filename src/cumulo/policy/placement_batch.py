"""Batch placement: many requests under per-(provider, region) quotas at minimum total $/h, exact.

Kept apart from `placement` so that ranking one request (what the control plane does on every
launch) does not load scipy; this module solves a MILP with scipy.optimize.milp. Pure: no clock,
no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_array

from cumulo.core.errors import InvalidSpec, NotFound, Unschedulable
from cumulo.core.offerings import Offering
from cumulo.policy.placement import Candidate, PlacementRequest, _speed, is_blocked, rank
from cumulo.policy.quota import QUOTA_RESOURCES, check_quota_key, quota_usage

__all__ = ["QUOTA_RESOURCES", "BatchPlacement", "QuotasInfeasible", "place_batch", "quota_usage"]


@dataclass(frozen=True)
class BatchPlacement:
    """One Candidate per request (same order), the total $/h, and the quota'd resources used per
    (provider, region)."""

    assignments: tuple[Candidate, ...]
    total_hourly: float
    usage: Mapping[tuple[str, str], Mapping[str, float]]


class QuotasInfeasible(Unschedulable):
    """Every request fits somewhere on its own, but not all of them within the quotas together."""


def _class_key(r: PlacementRequest) -> tuple:
    return (r.cpu, r.memory_gib, (r.accelerator or "").lower(), r.accelerator_count, (r.instance_type or "").lower(),
            r.count, r.spot, r.providers, r.exclude_providers, r.regions, r.exclude_regions, r.max_price)


class _Table:
    """The offerings reduced to one row per (provider, region, instance type): quotas are per
    region, so within a region only the cheapest zone of a type (per market) can be in an optimum."""

    def __init__(self, offerings: Sequence[Offering], blocked: frozenset) -> None:
        groups: dict[tuple[str, str, str], list[Offering]] = {}
        for o in sorted(offerings, key=lambda o: (o.provider, o.region, o.zone or "", o.instance_type)):
            if not is_blocked(blocked, o):
                groups.setdefault((o.provider, o.region, o.instance_type), []).append(o)
        self.keys = list(groups)
        n = len(self.keys)
        self.od_offer: list[Offering] = []
        self.sp_offer: list[Offering] = []
        od = np.empty(n)
        sp = np.empty(n)
        sp_is_spot = np.zeros(n, dtype=bool)
        for i, members in enumerate(groups.values()):
            best = min(members, key=lambda o: o.price)  # first of equals: deterministic
            self.od_offer.append(best)
            od[i] = best.price
            cheap = min(members, key=lambda o: min(o.price, o.spot_price if o.spot_price is not None else math.inf))
            self.sp_offer.append(cheap)
            if cheap.spot_price is not None and cheap.spot_price < cheap.price:
                sp[i], sp_is_spot[i] = cheap.spot_price, True
            else:
                sp[i] = best.price
                self.sp_offer[-1] = best
        self.od, self.sp, self.sp_is_spot = od, sp, sp_is_spot
        rep = [m[0] for m in groups.values()]
        self.rep = rep
        self.vcpus = np.array([o.vcpus for o in rep])
        self.mem = np.array([o.memory_gib for o in rep])
        self.acc = np.array([(o.accelerator or "").lower() for o in rep], dtype=object)
        self.acc_count = np.array([o.accelerator_count for o in rep])
        self.itype = np.array([o.instance_type.lower() for o in rep], dtype=object)
        self.provider = np.array([k[0] for k in self.keys], dtype=object)
        self.region = np.array([k[1] for k in self.keys], dtype=object)
        self.loc = [(k[0], k[1]) for k in self.keys]
        by_loc: dict[tuple[str, str], list[int]] = {}
        for i, loc in enumerate(self.loc):
            by_loc.setdefault(loc, []).append(i)
        self.by_loc = {loc: np.array(v) for loc, v in by_loc.items()}
        self._usage: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def feasible(self, r: PlacementRequest) -> tuple[np.ndarray, np.ndarray]:
        """(mask of rows that fit r, $/h per machine of each row in r's market)."""
        m = (self.vcpus >= r.cpu) & (self.mem >= r.memory_gib)
        if r.accelerator is not None:
            m &= (self.acc == r.accelerator.lower()) & (self.acc_count >= r.accelerator_count)
        if r.instance_type is not None:
            m &= self.itype == r.instance_type.lower()
        if r.providers:
            m &= np.isin(self.provider, list(r.providers))
        if r.exclude_providers:
            m &= ~np.isin(self.provider, list(r.exclude_providers))
        if r.regions:
            m &= np.isin(self.region, list(r.regions))
        if r.exclude_regions:
            m &= ~np.isin(self.region, list(r.exclude_regions))
        price = self.sp if r.spot else self.od
        if r.max_price is not None:
            m &= price <= r.max_price
        return m, price

    def usage(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Per row, how much of quota resource `key` one machine uses (on-demand mode, spot mode)."""
        if key not in self._usage:
            check_quota_key(key)
            market, base_key = (key.split(":", 1) if key.startswith(("spot:", "on-demand:")) else ("", key))
            if base_key == "instances":
                per = np.ones(len(self.keys))
            elif base_key == "vcpus":
                per = self.vcpus.astype(float)
            elif base_key == "memory_gib":
                per = self.mem.astype(float)
            elif base_key == "gpus":
                per = self.acc_count.astype(float)
            else:
                per = self.acc_count * (self.acc == base_key[5:].lower()).astype(float)
            if market == "spot":
                pair = (np.zeros_like(per), per * self.sp_is_spot)
            elif market == "on-demand":
                pair = (per, per * ~self.sp_is_spot)
            else:
                pair = (per, per)
            self._usage[key] = pair
        return self._usage[key]

    def dominance(self, quotas: Mapping[tuple[str, str], Mapping[str, float]], spot: bool):
        """Sparse n x n: [i, j] when rows i and j are in the same quota'd region and i is as cheap
        or cheaper than j in this market while using no more of any of the region's quota'd
        resources (ties go to the earlier row, so two equal rows never remove each other)."""
        price = self.sp if spot else self.od
        ii, jj = [], []
        for loc, limits in quotas.items():
            idx = self.by_loc.get(loc)
            if idx is None or idx.size < 2:
                continue
            p = price[idx]
            u = np.stack([self.usage(k)[1 if spot else 0][idx] for k in limits], axis=1) if limits else np.zeros((idx.size, 0))
            le_u = (u[:, None, :] <= u[None, :, :]).all(axis=2)
            lt_u = (u[:, None, :] < u[None, :, :]).any(axis=2)
            earlier = np.arange(idx.size)[:, None] < np.arange(idx.size)[None, :]
            dom = (p[:, None] <= p[None, :]) & le_u & ((p[:, None] < p[None, :]) | lt_u | earlier)
            a, b = np.nonzero(dom)
            ii.append(idx[a])
            jj.append(idx[b])
        n = len(self.keys)
        if not ii:
            return coo_array((n, n)).tocsr()
        i, j = np.concatenate(ii), np.concatenate(jj)
        return coo_array((np.ones(i.size), (i, j)), shape=(n, n)).tocsr()

    def candidate(self, row: int, r: PlacementRequest) -> Candidate:
        spot = bool(r.spot and self.sp_is_spot[row])
        o = self.sp_offer[row] if r.spot else self.od_offer[row]
        hourly = float(self.sp[row] if r.spot else self.od[row])
        return Candidate(o, spot, hourly, hourly * r.count, _speed(r, o))


def place_batch(
    requests: Sequence[PlacementRequest],
    offerings: Sequence[Offering],
    quotas: Mapping[tuple[str, str], Mapping[str, float]] | None = None,
    blocked: frozenset = frozenset(),
) -> BatchPlacement:
    """Place every request (each: `count` machines of one offering) at minimum total $/h such that,
    for each (provider, region) in `quotas`, the machines placed there use at most the given amount
    of each resource (see `quota_usage`). Regions without an entry are unlimited. Exact: an integer
    program solved by scipy.optimize.milp (HiGHS) with a zero optimality gap. The objective is
    always cost here; ties between equally cheap choices go to the earlier (provider, region, zone,
    type). Raises Unschedulable when one request fits nowhere (with rank's reason) or when the
    quotas cannot hold all requests together."""
    quotas = quotas or {}
    for loc, limits in quotas.items():
        for key, limit in limits.items():
            check_quota_key(key)
            if not (limit >= 0):
                raise InvalidSpec(f"quota {loc[0]}/{loc[1]} {key} must be >= 0, got {limit}")
    if not requests:
        return BatchPlacement((), 0.0, {})
    table = _Table(offerings, blocked)
    n = len(table.keys)
    constrained = np.array([loc in quotas for loc in table.loc], dtype=bool)

    classes: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        classes.setdefault(_class_key(r), []).append(i)
    class_list = list(classes.values())
    reps = [requests[members[0]] for members in class_list]

    # Candidate rows per class, reduced without losing any optimum:
    # - outside the quota'd regions only the cheapest row matters (it uses no quota);
    # - inside, only rows cheaper than that one, and within one region only rows that no other
    #   feasible row dominates (as cheap or cheaper, using no more of any quota'd resource).
    base: list[list[int]] = []
    limited = np.zeros((len(reps), n), dtype=bool)
    prices = np.empty((len(reps), n))
    for c, r in enumerate(reps):
        mask, price = table.feasible(r)
        if not mask.any():
            try:
                rank(r, offerings, blocked)
            except (Unschedulable, NotFound, InvalidSpec) as e:
                e.message = f"request {class_list[c][0]}: {e.message}"
                e.args = (e.message,)
                raise
            raise Unschedulable(f"request {class_list[c][0]}: no offering fits {r.describe()}")  # pragma: no cover
        prices[c] = price
        free = np.flatnonzero(mask & ~constrained)
        bound = math.inf
        base.append([])
        if free.size:
            best = int(free[np.argmin(price[free])])
            base[c].append(best)
            bound = price[best]
        limited[c] = mask & constrained & (price < bound)
    if limited.any():
        spot_mode = np.array([r.spot for r in reps])
        for mode in (False, True):
            sel = np.flatnonzero(spot_mode == mode)
            if sel.size and limited[sel].any():
                dom = table.dominance(quotas, mode)  # dom[i, j]: row i dominates row j
                dominated = (dom.T @ limited[sel].T.astype(np.float64)).T > 0
                limited[sel] &= ~dominated
    # Requests whose candidate rows come out the same (same market and machine count, so the same
    # prices and quota use) are interchangeable: one integer variable per row serves them all.
    # Distinct shapes mostly collapse here (feasibility is a threshold on the catalog's few sizes).
    merged: dict[tuple, int] = {}
    merged_members: list[list[int]] = []
    merged_reps: list[PlacementRequest] = []
    merged_rows: list[list[int]] = []
    for c, r in enumerate(reps):
        rows = base[c] + np.flatnonzero(limited[c]).tolist()
        key = (r.spot, r.count, tuple(rows))
        m = merged.get(key)
        if m is None:
            merged[key] = len(merged_reps)
            merged_members.append(list(class_list[c]))
            merged_reps.append(r)
            merged_rows.append(rows)
        else:
            merged_members[m].extend(class_list[c])
    class_list = [sorted(members) for members in merged_members]
    prices = np.stack([table.sp if r.spot else table.od for r in merged_reps])  # $/h per machine
    reps = merged_reps
    var_class: list[int] = []
    var_row: list[int] = []
    for c, rows in enumerate(merged_rows):
        var_class.extend([c] * len(rows))
        var_row.extend(rows)
    vc = np.array(var_class)
    vr = np.array(var_row)
    counts = np.array([len(m) for m in class_list], dtype=float)
    machines = np.array([r.count for r in reps], dtype=float)
    cost = prices[vc, vr] * machines[vc]
    x = _solve(table, reps, counts, machines, vc, vr, cost, quotas, len(requests))

    assignments: list[Candidate | None] = [None] * len(requests)
    usage: dict[tuple[str, str], dict[str, float]] = {}
    order = np.lexsort((vr, cost, vc))
    next_member = [0] * len(class_list)
    for v in order.tolist():
        c, k = int(vc[v]), int(round(x[v]))
        r = reps[c]
        for _ in range(k):
            cand = table.candidate(int(vr[v]), r)
            assignments[class_list[c][next_member[c]]] = cand
            next_member[c] += 1
            loc = (cand.offering.provider, cand.offering.region)
            if loc in quotas:
                used = usage.setdefault(loc, {key: 0.0 for key in quotas[loc]})
                for key in quotas[loc]:
                    used[key] += quota_usage(key, cand.offering, cand.spot, r.count)
    final = tuple(a for a in assignments if a is not None)
    assert len(final) == len(requests)
    return BatchPlacement(final, float(sum(a.total_hourly for a in final)), usage)


def _solve(table: _Table, reps: list[PlacementRequest], counts: np.ndarray, machines: np.ndarray, vc: np.ndarray,
           vr: np.ndarray, cost: np.ndarray, quotas: Mapping[tuple[str, str], Mapping[str, float]],
           n_requests: int) -> np.ndarray:
    nv = vr.size
    spot = np.array([r.spot for r in reps])[vc]
    loc_id = {loc: i for i, loc in enumerate(quotas)}
    var_loc = np.array([loc_id.get(table.loc[row], -1) for row in vr.tolist()])
    qi, qj, qv, limits = [], [], [], []
    for loc, lims in quotas.items():
        at = np.flatnonzero(var_loc == loc_id[loc])
        if not at.size:
            continue
        for key, limit in lims.items():
            u_od, u_sp = table.usage(key)
            a = np.where(spot[at], u_sp[vr[at]], u_od[vr[at]]) * machines[vc[at]]
            nz = a != 0
            if nz.any():
                qi.append(np.full(int(nz.sum()), len(limits)))
                qj.append(at[nz])
                qv.append(a[nz])
                limits.append(limit)
    # Start from the cheapest choice of every class (ties: the earlier row).
    x = np.zeros(nv)
    order = np.lexsort((vr, cost, vc))
    first = order[np.r_[True, vc[order][1:] != vc[order][:-1]]]
    x[first] = counts[vc[first]]
    if not limits:
        return x
    lim = np.array(limits, dtype=float)
    a_q = coo_array((np.concatenate(qv), (np.concatenate(qi), np.concatenate(qj))), shape=(lim.size, nv)).tocsr()
    if np.all(a_q @ x <= lim + 1e-9):  # the unconstrained optimum fits: it is the optimum
        return x
    a_eq = coo_array((np.ones(nv), (vc, np.arange(nv))), shape=(counts.size, nv)).tocsr()
    upper = counts[vc]
    # The LP relaxation gives a lower bound and reduced costs; rounding its solution gives a
    # feasible placement (an upper bound). A column whose reduced cost exceeds the gap between the
    # two cannot be used by any placement as cheap as that one, so the integer program is solved
    # over the other columns only: the same optimum, found much faster (most columns go).
    keep, incumbent = _reduce(cost, a_eq, counts, a_q, lim, upper, vc)
    if keep is None:
        return incumbent  # the rounded LP solution meets the LP bound: optimal
    if keep is not False:
        cols = np.flatnonzero(keep)
        res = milp(cost[cols], integrality=np.ones(cols.size), bounds=Bounds(0, upper[cols]),
                   constraints=[LinearConstraint(a_eq[:, cols], counts, counts), LinearConstraint(a_q[:, cols], -np.inf, lim)],
                   options={"mip_rel_gap": 0.0})
        if res.status == 0 and res.x is not None:
            x = np.zeros(nv)
            x[cols] = np.round(res.x)
            return x
    res = milp(cost, integrality=np.ones(nv), bounds=Bounds(0, upper),
               constraints=[LinearConstraint(a_eq, counts, counts), LinearConstraint(a_q, -np.inf, lim)],
               options={"mip_rel_gap": 0.0})
    if res.status == 2 or res.x is None:
        limited = ", ".join(f"{p}/{r}: " + " ".join(f"{k}<={v:g}" for k, v in lim_.items())
                            for (p, r), lim_ in sorted(quotas.items()))
        raise QuotasInfeasible(f"the {n_requests} requests cannot all be placed within the quotas ({limited}); "
                            "each fits on its own: raise a quota, allow more regions or providers, or place fewer")
    if res.status != 0:  # pragma: no cover - HiGHS stopped early (time or node limit): not exact
        raise Unschedulable(f"batch placement did not reach an optimum: {res.message}")
    return np.round(res.x)


def _reduce(cost: np.ndarray, a_eq, counts: np.ndarray, a_q, lim: np.ndarray, upper: np.ndarray, vc: np.ndarray):
    """(columns to keep, incumbent) by LP bound + rounding + reduced-cost fixing; (None, x) when the
    rounded x is provably optimal; (False, ...) when the full MILP should run (nothing can be
    concluded, or too little would be dropped; the full MILP reports infeasibility itself)."""
    lp = linprog(cost, A_ub=a_q, b_ub=lim, A_eq=a_eq, b_eq=counts, bounds=np.stack([np.zeros_like(upper), upper], 1),
                 method="highs")
    if lp.status != 0 or lp.x is None:
        return False, None
    # A bound valid for any multipliers (y free on the equalities, w <= 0 on the quotas):
    # cost.x >= y.counts + w.lim + sum_j min(0, d_j u_j) + sum_{d_j > 0} d_j x_j, d = cost - A_eq'y - A_q'w.
    y = lp.eqlin.marginals
    w = np.minimum(lp.ineqlin.marginals, 0.0)
    d = cost - a_eq.T @ y - a_q.T @ w
    bound = float(y @ counts + w @ lim + np.minimum(0.0, d * upper).sum())
    x = _round(lp.x, cost, a_q, lim, counts, vc)
    if x is None:
        return False, None
    best = float(cost @ x)
    tol = 1e-9 * max(1.0, abs(best))
    if best <= bound + tol:
        return None, x
    keep = (d <= best - bound + tol) | (x > 0)
    # Measured: when most columns stay, HiGHS does no better on the reduced program than on the
    # full one (sometimes worse), so the reduction is used only when it drops at least half.
    return (keep if keep.sum() <= keep.size / 2 else False), x


def _round(x_lp: np.ndarray, cost: np.ndarray, a_q, lim: np.ndarray, counts: np.ndarray, vc: np.ndarray):
    """A feasible integer placement near the LP's: its integer parts, then each class's remaining
    requests one by one on the cheapest of its columns with quota room left; None if one has none."""
    x = np.floor(x_lp + 1e-9)
    left = lim - a_q @ x
    short = counts - np.bincount(vc, weights=x, minlength=counts.size)
    if (left < -1e-9).any():
        return None
    cols = a_q.tocsc()
    for c in np.flatnonzero(short > 0.5):
        mine = np.flatnonzero(vc == c)
        mine = mine[np.argsort(cost[mine], kind="stable")]
        need = int(short[c] + 0.5)
        for j in mine:
            if need == 0:
                break
            rows, use = cols.indices[cols.indptr[j]:cols.indptr[j + 1]], cols.data[cols.indptr[j]:cols.indptr[j + 1]]
            fit = need if not rows.size else int(min(need, np.floor(min(left[rows] / use) + 1e-9)))
            if fit > 0:
                x[j] += fit
                left[rows] -= use * fit
                need -= fit
        if need:
            return None
    return x
