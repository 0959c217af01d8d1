"""GPUs of this machine through NVML: utilization, memory, temperature, ECC and XID errors, and the
GPU memory each process uses. Everything is skipped cleanly where there is no driver or library
(`Gpus.available` is False), and a query a GPU does not support is left out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pynvml  # nvidia-ml-py: loads libnvidia-ml.so only when nvmlInit() is called

log = logging.getLogger(__name__)


@dataclass
class GpuSample:
    index: int
    values: dict[str, float] = field(default_factory=dict)
    #: pid -> GPU memory bytes of the processes running on it
    processes: dict[int, int] = field(default_factory=dict)
    #: pid -> SM utilization % of that process since the previous sample (where NVML samples it)
    process_utilization: dict[int, float] = field(default_factory=dict)


class Gpus:
    def __init__(self) -> None:
        self.available = False
        self._handles: list = []
        self._events = None
        self._xids: dict[int, int] = {}  # gpu index -> XID errors seen since start
        self._last_xid: dict[int, int] = {}
        self._util_seen: dict[int, int] = {}  # gpu index -> newest process-utilization timestamp read (us)
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return
        try:
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.available = bool(self._handles)
        except pynvml.NVMLError as exc:
            log.warning("NVML: cannot list GPUs (%s); GPU metrics are off", exc)
            return
        try:  # XID errors arrive as events; count them as they come
            self._events = pynvml.nvmlEventSetCreate()
            for h in self._handles:
                try:
                    pynvml.nvmlDeviceRegisterEvents(h, pynvml.nvmlEventTypeXidCriticalError, self._events)
                except pynvml.NVMLError:
                    pass
        except pynvml.NVMLError:
            self._events = None

    def close(self) -> None:
        if self._events is not None:
            try:
                pynvml.nvmlEventSetFree(self._events)
            except pynvml.NVMLError:
                pass
        if self.available or self._handles:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass

    def _drain_xids(self) -> None:
        if self._events is None:
            return
        for _ in range(1000):
            try:
                ev = pynvml.nvmlEventSetWait_v2(self._events, 0)
            except pynvml.NVMLError:  # NVML_ERROR_TIMEOUT: no more events
                return
            try:
                i = pynvml.nvmlDeviceGetIndex(ev.device)
            except pynvml.NVMLError:
                continue
            self._xids[i] = self._xids.get(i, 0) + 1
            self._last_xid[i] = int(ev.eventData)

    def sample(self) -> list[GpuSample]:
        if not self.available:
            return []
        self._drain_xids()
        out = []
        for i, h in enumerate(self._handles):
            g = GpuSample(i)
            v = g.values
            _try(v, "gpu_utilization_percent", lambda: pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            mem = _call(lambda: pynvml.nvmlDeviceGetMemoryInfo(h))
            if mem is not None:
                v["gpu_memory_used_bytes"], v["gpu_memory_total_bytes"] = float(mem.used), float(mem.total)
            _try(v, "gpu_temperature_celsius",
                 lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
            _try(v, "gpu_power_watts", lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
            _try(v, "gpu_ecc_errors_uncorrected", lambda: pynvml.nvmlDeviceGetTotalEccErrors(
                h, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC))
            _try(v, "gpu_ecc_errors_corrected", lambda: pynvml.nvmlDeviceGetTotalEccErrors(
                h, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC))
            if self._events is not None:
                v["gpu_xid_errors"] = float(self._xids.get(i, 0))
                if i in self._last_xid:
                    v["gpu_last_xid"] = float(self._last_xid[i])
            for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                for p in _call(lambda: getter(h)) or ():
                    used = getattr(p, "usedGpuMemory", None)
                    g.processes[p.pid] = g.processes.get(p.pid, 0) + (int(used) if isinstance(used, int) else 0)
            self._process_utilization(i, h, g)
            out.append(g)
        return out

    def _process_utilization(self, i: int, h, g: GpuSample) -> None:  # noqa: ANN001
        """Each process's SM utilization, averaged over NVML's samples since the previous call."""
        samples = _call(lambda: pynvml.nvmlDeviceGetProcessUtilization(h, self._util_seen.get(i, 0)))
        if not samples:
            return
        per: dict[int, list[int]] = {}
        for s in samples:
            per.setdefault(int(s.pid), []).append(int(s.smUtil))
            self._util_seen[i] = max(self._util_seen.get(i, 0), int(s.timeStamp))
        g.process_utilization = {pid: sum(u) / len(u) for pid, u in per.items()}


def _call(fn):  # noqa: ANN001, ANN202
    try:
        return fn()
    except pynvml.NVMLError:
        return None


def _try(values: dict[str, float], name: str, fn) -> None:  # noqa: ANN001
    got = _call(fn)
    if got is not None:
        values[name] = float(got)
