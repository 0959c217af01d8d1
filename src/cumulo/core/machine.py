"""This machine as an offering: the one definition the catalog (`cumulo offers`, placement) and
the local provider (its capacity check) share, so the two can never disagree about it.

Memory is rounded *down* to 0.01 GiB: an offering must never promise more than the machine has
(the catalog had rounded to 0.1 GiB and the provider to 0.01 GiB, so a 23.586 GiB machine was
offered as 23.6 GiB and refused as 23.59 GiB by its own provider)."""

from __future__ import annotations

import math

import psutil
import pynvml  # nvidia-ml-py: loads libnvidia-ml.so only when nvmlInit() is called

from cumulo.core.offerings import Offering

__all__ = ["LOCAL", "gpu_short_name", "local_offering", "round_down_gib"]

LOCAL = "local"  # the provider, region and instance type of this machine
_GIB = 2**30


def round_down_gib(n_bytes: float, places: int = 2) -> float:
    """Bytes as GiB rounded down to `places` decimals (23.586 GiB -> 23.58)."""
    scale = 10**places
    return math.floor(n_bytes / _GIB * scale + 1e-9) / scale


def gpu_short_name(full: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'A100-80GB', 'Tesla T4' -> 'T4', 'NVIDIA H100 80GB HBM3' -> 'H100'
    (the catalog's accelerator names, so a request for "A100" finds this machine)."""
    for known in ("H100", "A100", "A10G", "L40S", "L4", "V100", "T4", "A10"):
        if known in full.upper():
            return f"{known}-80GB" if known == "A100" and "80GB" in full.upper() else known
    return full.replace("NVIDIA ", "").split()[0]


def _gpus() -> tuple[str | None, int, float]:
    """(short name of GPU 0, how many, GiB of memory each) from NVML; (None, 0, 0.0) without one."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver or library: no GPUs
        return None, 0, 0.0
    try:
        count = pynvml.nvmlDeviceGetCount()
        if not count:
            return None, 0, 0.0
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(h)
        memory = round_down_gib(pynvml.nvmlDeviceGetMemoryInfo(h).total, 1)
        return gpu_short_name(name.decode() if isinstance(name, bytes) else str(name)), count, memory
    except pynvml.NVMLError:
        return None, 0, 0.0
    finally:
        pynvml.nvmlShutdown()


def local_offering() -> Offering:
    """This machine, free: its CPUs and memory (psutil) and NVIDIA GPUs (NVML, when there are any)."""
    accelerator, count, accmem = _gpus()
    return Offering(provider=LOCAL, region=LOCAL, zone=None, instance_type=LOCAL,
                    vcpus=float(psutil.cpu_count() or 1), memory_gib=round_down_gib(psutil.virtual_memory().total),
                    accelerator=accelerator, accelerator_count=count, accelerator_memory_gib=accmem, price=0.0,
                    spot_price=None)
