"""A real moto_server (moto's HTTP emulation of EC2 and SSM) on loopback, started by the tests.

Each test gets the server in a fresh state (POST /moto-api/reset) and an environment that points
boto3's standard configuration at it: AWS_ENDPOINT_URL and dummy credentials, with shared config
files and instance metadata switched off so nothing from the host leaks in.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass

import pytest

from cumulo.core.offerings import Offering

ENV_TO_CLEAR = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION",
                "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_SSM", "CUMULO_AWS_AMI", "CUMULO_AWS_REGIONS",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Moto:
    url: str

    def post(self, path: str, body: bytes = b"") -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + path, data=body, method="POST",
                                                      headers={"Content-Type": "text/plain"}), timeout=10).read()

    def reset(self) -> None:
        self.post("/moto-api/reset")

    def enforce_auth(self, on: bool) -> None:
        """Make moto check credentials against its IAM (on) or accept anything (off, the default)."""
        self.post("/moto-api/reset-auth", b"0" if on else b"inf")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.skip("AWS provider tests need moto's server: pip install 'moto[server]==5.2.1' (provides moto_server)")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto_server.log", "wb")
    # Moto's own switches to validate instance types and AMIs the way EC2 does.
    env = {**os.environ, "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true", "MOTO_ENABLE_AMI_VALIDATION": "true"}
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"moto_server exited with {proc.returncode}; see {log.name}")
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not answer on {url} within 30 s")
            time.sleep(0.1)
    try:
        yield Moto(url)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def aws_env(moto_server, monkeypatch, tmp_path):
    """Point boto3's standard configuration at moto with dummy credentials; a fresh emulator state."""
    moto_server.reset()
    for name in ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_server


G4DN = Offering(provider="aws", region="us-east-1", zone="us-east-1a", instance_type="g4dn.xlarge", vcpus=4,
                memory_gib=16, accelerator="T4", accelerator_count=1, accelerator_memory_gib=16, price=0.526,
                spot_price=0.2104)


@pytest.fixture
def g4dn() -> Offering:
    return G4DN


@pytest.fixture
def ec2_faults(aws_env, monkeypatch):
    """boto3 -> a fault-injecting proxy -> moto (see tests/ec2_faults.py): EC2's capacity and quota
    refusals and spot interruptions, which moto never produces. botocore retries 5xx answers, so
    AWS_MAX_ATTEMPTS=2 keeps a refused launch quick while still going through a retry."""
    from tests.ec2_faults import EC2Faults

    faults = EC2Faults(aws_env.url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", faults.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    yield faults
    faults.stop()
