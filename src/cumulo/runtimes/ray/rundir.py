"""The files of one Ray launch, in a folder on the cluster's shared filesystem.

Written by the control plane (RayRuntime.launch):
  spec.json        the command, workdir, worker count, resources, placement, grace, serve (no secrets)
  secrets-NONCE    every rank's environment (mode 0600): read and deleted by the driver of the
                   submission that named NONCE; a refused duplicate submission deletes its own
  control          {"signal": "TERM"|"KILL"}: stop()/kill() ask the driver to stop every worker
Written by the driver (and its worker actors):
  claim            created exclusively when the driver starts, or by abandon() first: then
                   {"abandoned": true} and a late driver exits without starting anything
  env-N            rank N's environment for its actor (0600; deleted by the actor once read)
  status.json      what the driver sees, rewritten atomically at least every HEARTBEAT seconds:
                   {"phase": "queued"|"starting"|"running"|"exited", "detail", "updated",
                    "workers": [{"rank", "node", "host", "pid", "port", "gpus", "exit_code",
                                 "cpu_percent", "memory_bytes"}],
                    "exit_codes", "exit_code", "node_lost"}
  rank-N.log       stdout and stderr of worker N
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HEARTBEAT = 2.0  # seconds between status rewrites while nothing changes


def read_json(path: Path):
    """The parsed file, None if absent, ... if present but unreadable (torn, being written)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return ...


def write_json(path: Path, data) -> None:
    """Atomically: a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def claim(run_dir: Path, content: dict) -> bool:
    """Create the claim file exclusively; False if someone (a driver, abandon()) has it already."""
    try:
        fd = os.open(run_dir / "claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(content, f)
    return True


def exit_code_of(returncode: int) -> int:
    """A subprocess' return code as a shell reports it (128 + N for a death by signal N)."""
    return 128 - returncode if returncode < 0 else returncode
