"""Prometheus text of the sampler's newest sample: one gauge family per (kind, metric),
`cumulo_<kind>_<metric>`, labelled by object (node / job / deployment, with workspace) and instance
(gpu / rank / replica; empty for the whole object)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cumulo.store.metrics import SeriesKey

#: the label names per kind: (object label, instance label)
LABELS = {"node": ("node", "gpu"), "job": ("job", "rank"), "deployment": ("deployment", "replica")}

HELP = {
    "cpu_percent": "CPU use in percent of one core (processes: their whole tree)",
    "memory_used_bytes": "Memory in use (total - available)",
    "memory_total_bytes": "Memory of the machine",
    "memory_bytes": "Resident memory of the process tree",
    "gpu_memory_bytes": "GPU memory used by the process tree",
    "gpu_utilization_percent": "GPU utilization (NVML; a job's rank: SM use of its processes)",
    "gpu_memory_used_bytes": "GPU memory in use (NVML)",
    "gpu_memory_total_bytes": "GPU memory (NVML)",
    "gpu_temperature_celsius": "GPU temperature (NVML)",
    "gpu_power_watts": "GPU power draw (NVML)",
    "gpu_ecc_errors_uncorrected": "Uncorrected ECC errors since the driver loaded (volatile)",
    "gpu_ecc_errors_corrected": "Corrected ECC errors since the driver loaded (volatile)",
    "gpu_xid_errors": "Critical XID errors seen since the control plane started",
    "gpu_last_xid": "The code of the newest critical XID error",
    "step": "Newest step the job reported",
    "steps_per_second": "Steps per second over the job's recent reports",
    "progress": "step / total_steps, when the job reports total_steps",
    "eta_seconds": "Seconds to total_steps at the current rate",
    "seconds_since_report": "Seconds since the job's newest report",
    "request_rate": "Requests that arrived per second (every gateway)",
    "in_flight": "Requests in flight",
    "latency_p50_seconds": "Median latency over the sampling interval",
    "latency_mean_seconds": "Mean latency over the sampling interval",
    "latency_p99_seconds": "99th percentile latency over the sampling interval",
    "error_rate": "Share of answers that were 5xx over the sampling interval",
    "replicas_ready": "Replicas ready",
    "cpu_total": "CPUs of the engine node",
    "cpu_free": "CPUs the engine reports free",
    "memory_free_bytes": "Memory the engine reports free",
    "gpus_total": "GPUs of the engine node",
    "gpus_free": "GPUs the engine reports free",
    "ready": "1 if the engine reports the node alive",
}


class MonitorCollector(Collector):
    def __init__(self, latest: Callable[[], tuple[int | None, Mapping[SeriesKey, float]]],
                 cpu_seconds: Callable[[], float] = lambda: 0.0) -> None:
        self._latest = latest
        self._cpu = cpu_seconds

    def collect(self) -> Iterator:
        t, values = self._latest()
        families: dict[tuple[str, str], GaugeMetricFamily] = {}
        for key in sorted(values):
            obj_label, inst_label = LABELS.get(key.kind, ("object", "instance"))
            fam = families.get((key.kind, key.metric))
            if fam is None:
                labels = ([] if key.kind == "node" else ["workspace"]) + [obj_label, inst_label]
                fam = families[(key.kind, key.metric)] = GaugeMetricFamily(
                    f"cumulo_{key.kind}_{key.metric}", HELP.get(key.metric, key.metric.replace("_", " ")),
                    labels=labels)
            lv = ([] if key.kind == "node" else [key.workspace]) + [key.object, key.instance]
            fam.add_metric(lv, values[key])
        yield from families.values()
        if t is not None:
            yield GaugeMetricFamily("cumulo_monitor_sample_timestamp_seconds", "When the newest sample was taken",
                                    value=t)
        yield CounterMetricFamily("cumulo_monitor_sample_cpu_seconds", "CPU time the sampler has spent",
                                  value=self._cpu())


def exposition(latest: Callable[[], tuple[int | None, Mapping[SeriesKey, float]]],
               cpu_seconds: Callable[[], float] = lambda: 0.0) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(latest, cpu_seconds))
    return generate_latest(registry)
