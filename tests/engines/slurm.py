"""pytest plugin: the one Slurm cluster every Slurm test shares (started by `.ci/slurm.sh`)."""

from __future__ import annotations

import os
import subprocess

import pytest

START = "Slurm not running: start it with `bash .ci/slurm.sh`"


def _partition() -> str | None:
    """The default partition when Slurm answers, None when it does not."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %t"], check=False, capture_output=True, text=True, timeout=5)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    up = [p for p, state in rows if not state.startswith(("down", "drain", "fail"))]
    default = next((p for p in up if p.endswith("*")), up[0] if up else None)
    return default.rstrip("*") if default else None


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The partition to submit to; skips with the command that starts Slurm when none answers."""
    partition = _partition()
    if partition is None:
        if os.environ.get("CUMULO_TEST_SLURM"):  # CI started it: its absence is a failure, not a skip
            pytest.fail(f"CUMULO_TEST_SLURM is set but Slurm does not answer: {START}")
        pytest.skip(START)
    return partition
