"""`refresh_aws` against moto's server: a real HTTP emulation of the EC2 API, found by boto3 through
AWS_ENDPOINT_URL like any endpoint (no special code path)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime

import pytest

MOTO = shutil.which("moto_server")
pytestmark = pytest.mark.skipif(MOTO is None, reason="moto_server not installed: pip install 'moto[server]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url():
    port = _free_port()
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start on port {port}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def aws_env(moto_url, monkeypatch, tmp_path):
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("CUMULO_HOME", str(tmp_path / "home"))
    return tmp_path


def test_refresh_rebuilds_aws_from_the_api(aws_env):
    from cumulo.catalog import catalog_sources, find_instance_type, load_catalog, refresh_aws

    shipped = {(o.region, o.instance_type): o.price for o in load_catalog(["aws"])}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = refresh_aws(regions=["us-east-1", "eu-west-1"], now=now)
    assert rows and {o.region for o in rows} == {"us-east-1", "eu-west-1"}
    by_type = {o.instance_type: o for o in rows}
    g4 = by_type["g4dn.xlarge"]  # specs come from DescribeInstanceTypes
    assert (g4.vcpus, g4.memory_gib, g4.accelerator, g4.accelerator_count, g4.accelerator_memory_gib) == (4, 16, "T4", 1, 16)
    p4 = by_type["p4d.24xlarge"]
    assert (p4.accelerator, p4.accelerator_count) == ("A100", 8)
    assert by_type["p5.48xlarge"].accelerator == "H100"
    # zones from DescribeInstanceTypeOfferings, per availability zone
    zones = {o.zone for o in rows if o.instance_type == "g4dn.xlarge" and o.region == "us-east-1"}
    assert len(zones) >= 2 and all(z.startswith("us-east-1") for z in zones)
    # moto has no Pricing API: on-demand prices stay the shipped ones; spot prices come from the API
    assert all(o.price == shipped[(o.region, o.instance_type)] for o in rows)
    assert all(o.spot_price is not None for o in rows)
    # written to $CUMULO_HOME/catalog/aws.csv, which load_catalog now reads
    assert (aws_env / "home" / "catalog" / "aws.csv").is_file()
    assert sorted(load_catalog(["aws"]), key=repr) == sorted(rows, key=repr)
    meta = catalog_sources()["aws"]
    assert meta["date"] == "2026-01-01T00:00:00Z" and "Pricing API not reachable" in meta["source"]
    assert find_instance_type("aws", "g4dn.xlarge")[0].region in {"us-east-1", "eu-west-1"}


def test_refresh_command(aws_env):
    import json

    import typer
    from typer.testing import CliRunner

    from cumulo.catalog import cli

    app = typer.Typer()
    app.command("offers")(cli.offers)
    app.command("refresh")(cli.refresh)
    r = CliRunner().invoke(app, ["refresh", "--region", "us-west-2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["regions"] == ["us-west-2"] and out["offerings"] > 0 and out["file"].endswith("aws.csv")
    r = CliRunner().invoke(app, ["offers", "--provider", "aws", "--json"])
    assert {d["region"] for d in json.loads(r.stdout)} == {"us-west-2"}


def test_missing_credentials_is_a_clear_error(aws_env, monkeypatch):
    from cumulo.catalog import refresh_aws
    from cumulo.core.errors import CredentialsError

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CredentialsError, match="AWS credentials not found"):
        refresh_aws(regions=["us-east-1"])
