"""pytest plugin: a real Prometheus for the dashboard test (start it with `bash .ci/prometheus.sh`).

`prometheus` is (Prometheus URL, the host:port its shipped scrape config targets, the file its
`authorization.credentials_file` reads) from $CUMULO_TEST_PROMETHEUS; the test starts cumulo on that
address and writes a `--role metrics` token into the file. Without the variable the tests skip
with the command to run; with it set and no Prometheus answering, they fail (CI must not skip).
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ENV = "CUMULO_TEST_PROMETHEUS"
SKIP = (f"Prometheus not running: start it with `bash .ci/prometheus.sh` and export {ENV}=\"<its last line>\" "
        "(Debian's prometheus package; the script installs it)")


@dataclass(frozen=True)
class PrometheusTarget:
    url: str
    target: str  # host:port the scrape config points at
    token_file: Path

    @property
    def host(self) -> str:
        return self.target.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.target.rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def prometheus() -> PrometheusTarget:
    value = os.environ.get(ENV, "").strip()
    if not value:
        pytest.skip(SKIP)
    parts = value.split()
    if len(parts) != 3:
        pytest.fail(f"{ENV}={value!r}: expected 'PROMETHEUS_URL HOST:PORT TOKEN_FILE' (the last line of .ci/prometheus.sh)")
    url, target, token = parts
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as r:
            r.read()
    except OSError as e:
        pytest.fail(f"{ENV} is set but Prometheus at {url} does not answer ({e}): start it with `bash .ci/prometheus.sh`")
    return PrometheusTarget(url.rstrip("/"), target, Path(token))
