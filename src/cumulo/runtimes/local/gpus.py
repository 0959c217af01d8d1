"""NVIDIA GPUs on this machine through NVML; none when the driver or library is absent."""

from __future__ import annotations

import pynvml  # nvidia-ml-py: loads libnvidia-ml.so only when nvmlInit() is called


def detect_gpus() -> tuple[tuple[int, str], ...]:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return ()
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            out.append((i, name.decode() if isinstance(name, bytes) else str(name)))
        return tuple(out)
    finally:
        pynvml.nvmlShutdown()
