"""Is a node's GPU failing? A pure function over two readings of its GPUs' NVML counters.

A node is faulty when, since the previous reading, a GPU's uncorrected ECC errors went up, or its
XID error count went up with a last XID that means the hardware (NVIDIA's XID catalog: double-bit
ECC, row remapping, NVLink, fallen off the bus, GSP). XIDs a program causes (13 graphics engine
exception, 31 MMU fault, 43 a stopped kernel ...) are not the node's fault and are left to the job.
Counts seen first are the baseline: a count that was already there when cumulo started watching is
not a new fault (a person who uncordons a node is not overruled by an old count).
"""

from __future__ import annotations

from dataclasses import dataclass

#: XIDs that mean the GPU or its board is failing (not the program on it)
HARDWARE_XIDS = {
    48: "double-bit ECC error", 61: "internal micro-controller breakpoint", 62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping", 64: "ECC page retirement or row remapping failure",
    74: "NVLink error", 79: "GPU has fallen off the bus", 92: "high single-bit ECC error rate",
    94: "contained ECC error", 95: "uncontained ECC error", 119: "GSP RPC timeout", 120: "GSP error",
    140: "unrecovered ECC error",
}


@dataclass(frozen=True)
class GpuReading:
    xid_errors: float | None = None  # XID events seen since the sampler started
    last_xid: float | None = None
    ecc_uncorrected: float | None = None


def gpu_fault(before: dict[str, GpuReading], now: dict[str, GpuReading]) -> str | None:
    """Why the node's GPUs say it is failing (one line with the evidence), or None."""
    faults = []
    for gpu in sorted(now):
        cur, prev = now[gpu], before.get(gpu)
        if prev is None:
            continue  # the baseline
        if cur.ecc_uncorrected is not None and prev.ecc_uncorrected is not None \
                and cur.ecc_uncorrected > prev.ecc_uncorrected:
            faults.append(f"{gpu}: {cur.ecc_uncorrected - prev.ecc_uncorrected:g} new uncorrected ECC error(s) "
                          f"({cur.ecc_uncorrected:g} in all)")
        if cur.xid_errors is not None and prev.xid_errors is not None and cur.xid_errors > prev.xid_errors:
            xid = int(cur.last_xid) if cur.last_xid is not None else None
            if xid in HARDWARE_XIDS:
                faults.append(f"{gpu}: XID {xid} ({HARDWARE_XIDS[xid]})")
    return "; ".join(faults) or None
