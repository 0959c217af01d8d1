"""The environment a workload (job worker or replica) starts with.

A workload never inherits the control plane's environment: that holds cloud credentials, the
database URL and whatever else the operator exported. It gets an allow-list of variables that
describe the machine and the user (PATH, HOME, locale, time zone, temporary folder, library paths),
then its spec's `env`, then cumulo's own variables (set by the caller). An operator who needs more
of the control plane's environment passed through names the variables in
`CUMULO_WORKLOAD_ENV_ALLOW` (comma-separated); a workload's own settings belong in its spec.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["ALLOWED", "workload_env", "no_secrets"]

#: variables passed through from the control plane's environment when set there
ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "TEMP", "TMP",
    # the interpreter cumulo runs on, with its packages, is the one `python` means inside a workload
    "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME",
    # accelerators and their libraries
    "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "NVIDIA_DRIVER_CAPABILITIES",
    # trust stores (a path, never a secret)
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
})
_PREFIXES = ("LC_",)
ALLOW_VAR = "CUMULO_WORKLOAD_ENV_ALLOW"


def workload_env(spec_env: Mapping[str, str], control_env: Mapping[str, str] | None = None,
                 extra_allowed: Iterable[str] | None = None) -> dict[str, str]:
    """The base environment of a workload: the allow-listed part of `control_env` (default: this
    process's), `python` resolving to this interpreter, unbuffered Python output, then `spec_env`.
    The caller adds cumulo's own variables (CUMULO_*, RANK, PORT, ...) on top."""
    source = os.environ if control_env is None else control_env
    if extra_allowed is None:
        extra_allowed = [v.strip() for v in source.get(ALLOW_VAR, "").split(",") if v.strip()]
    allowed = ALLOWED | set(extra_allowed)
    env = {k: v for k, v in source.items() if k in allowed or k.startswith(_PREFIXES)}
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(spec_env)
    return env


def no_secrets(env: Mapping[str, object]) -> dict[str, str]:
    """The default secret resolver of a reconciler that was given none: plain values only."""
    refs = [k for k, v in env.items() if not isinstance(v, str)]
    if refs:
        raise RuntimeError(f"env {', '.join(refs)} refer to secrets, but this control plane has no secret store wired")
    return dict(env)  # type: ignore[arg-type]
