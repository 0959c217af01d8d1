"""The shipped catalog: loads offline, every row valid, lookups with did-you-mean, filters, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cumulo.catalog import (
    PROVIDERS,
    catalog_sources,
    filter_offerings,
    find_instance_type,
    load_catalog,
    parse_accelerator,
    read_csv,
    write_csv,
)
from cumulo.catalog import cli as catalog_cli
from cumulo.core.errors import InvalidSpec, NotFound

GPU_FAMILIES = {
    "aws": ["g4dn.", "g5.", "g6.", "p3.", "p4d.", "p5."],
    "gcp": ["a2-highgpu", "a3-highgpu", "g2-standard", "n1-standard-8+1xT4", "n1-standard-8+1xV100"],
    "azure": ["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4", "Standard_ND96asr_v4", "Standard_ND96isr_H100_v5"],
}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CUMULO_HOME", str(tmp_path))  # no refreshed copy: the shipped files


def test_loads_every_provider_with_source_and_date():
    offerings = load_catalog()
    assert {o.provider for o in offerings} == set(PROVIDERS)
    sources = catalog_sources()
    for p in ("aws", "gcp", "azure"):
        assert sources[p]["date"] and "approximate" in sources[p] and sources[p]["file"].startswith("package:")
        rows = [o for o in offerings if o.provider == p]
        assert len({o.region for o in rows}) >= 5 and len({o.zone for o in rows}) >= 12
        for prefix in GPU_FAMILIES[p]:
            assert any(o.instance_type.startswith(prefix) for o in rows), prefix


def test_every_row_is_valid():
    offerings = load_catalog(["aws", "gcp", "azure"])
    seen = set()
    specs: dict = {}
    for o in offerings:
        key = (o.provider, o.region, o.zone, o.instance_type)
        assert key not in seen, key
        seen.add(key)
        assert o.zone and o.zone.startswith(o.region), o
        assert o.vcpus > 0 and o.memory_gib > 0 and o.price > 0, o
        assert o.spot_price is None or 0 < o.spot_price < o.price, o
        assert (o.accelerator is None) == (o.accelerator_count == 0) == (o.accelerator_memory_gib == 0), o
        spec = (o.vcpus, o.memory_gib, o.accelerator, o.accelerator_count, o.accelerator_memory_gib)
        assert specs.setdefault((o.provider, o.instance_type), spec) == spec  # same type, same machine


def test_local_is_this_machine_and_free():
    (local,) = load_catalog(["local"])
    assert local.price == 0 and local.vcpus >= 1 and local.memory_gib > 0 and local.spot_price is None


def test_did_you_mean():
    with pytest.raises(NotFound) as e:
        find_instance_type("aws", "g4dn.medium")
    assert str(e.value).startswith("unknown instance type 'g4dn.medium' for aws; did you mean g4dn.xlarge, g4dn.2xlarge, ")
    with pytest.raises(NotFound, match="did you mean a2-highgpu-1g, a2-highgpu-2g, a2-highgpu-4g, a2-highgpu-8g"):
        find_instance_type("gcp", "a2-highgpu-3g")
    with pytest.raises(NotFound, match="unknown provider 'oracle'"):
        find_instance_type("oracle", "x")
    found = find_instance_type("aws", "g4dn.xlarge")
    assert found and all(o.instance_type == "g4dn.xlarge" for o in found)
    assert [o.price for o in found] == sorted(o.price for o in found)
    assert find_instance_type("aws", "G4DN.XLARGE") == found


def test_filters():
    cat = load_catalog()
    a100x8 = filter_offerings(cat, gpu="A100:8")
    assert a100x8 and all(o.accelerator == "A100" and o.accelerator_count == 8 for o in a100x8)
    assert {o.provider for o in a100x8} == {"aws", "gcp", "azure"}
    cheap_spot = filter_offerings(cat, gpu="a100:8", spot=True, max_price=12)
    assert cheap_spot and all(o.spot_price <= 12 for o in cheap_spot)
    assert all(o.region == "us-east-1" for o in filter_offerings(cat, provider="aws", region="us-east-1"))
    assert all(o.vcpus >= 32 and o.memory_gib >= 256 for o in filter_offerings(cat, min_vcpus=32, min_memory_gib=256))
    assert {o.instance_type for o in filter_offerings(cat, instance_type="p5.48xlarge")} == {"p5.48xlarge"}
    assert filter_offerings(cat, zone="us-east-1a") and all(o.zone == "us-east-1a" for o in filter_offerings(cat, zone="us-east-1a"))
    with pytest.raises(InvalidSpec, match="unknown accelerator 'A10'; did you mean A10G"):
        filter_offerings(cat, gpu="A10")
    with pytest.raises(InvalidSpec):
        filter_offerings(cat, gpu="A100:0")
    assert parse_accelerator("H100:8") == ("H100", 8) and parse_accelerator("T4") == ("T4", None)


def test_csv_round_trip_and_bad_header(tmp_path):
    rows = load_catalog(["azure"])[:5]
    write_csv(tmp_path / "x.csv", rows, {"source": "test", "date": "2025-01-01"})
    back, meta = read_csv((tmp_path / "x.csv").read_text())
    assert meta == {"source": "test", "date": "2025-01-01"} and sorted(back, key=repr) == sorted(rows, key=repr)
    with pytest.raises(InvalidSpec, match="header"):
        read_csv("a,b\n1,2\n")
    with pytest.raises(InvalidSpec, match="vcpus is not a number"):
        read_csv((tmp_path / "x.csv").read_text().replace(",96,", ",many,", 1).replace(",24,", ",many,", 1)
                 .replace(",4,", ",many,", 1))


def test_refreshed_copy_replaces_shipped(tmp_path):
    rows = load_catalog(["aws"])[:3]
    write_csv(tmp_path / "catalog" / "aws.csv", rows, {"source": "refresh test", "date": "2030-01-01"})
    assert load_catalog(["aws"]) == sorted(rows, key=lambda o: (o.region, o.zone or "", o.instance_type))
    assert catalog_sources()["aws"]["source"] == "refresh test"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("offers")(catalog_cli.offers)
    app.command("refresh")(catalog_cli.refresh)
    return app


def test_offers_command_json_and_table():
    r = CliRunner().invoke(_app(), ["offers", "--gpu", "A100:8", "--spot", "--provider", "gcp", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data and {d["provider"] for d in data} == {"gcp"} and all(d["market"] == "spot" for d in data)
    assert [d["hourly"] for d in data] == sorted(d["hourly"] for d in data)
    assert set(data[0]) == {"provider", "region", "zone", "instance_type", "vcpus", "memory_gib", "accelerator",
                            "accelerator_count", "accelerator_memory_gib", "price", "spot_price", "market", "hourly"}
    r = CliRunner().invoke(_app(), ["offers", "--instance-type", "g4dn.xlarge", "--region", "us-east-1"])
    assert r.exit_code == 0 and "5 offerings" in r.stdout
    r = CliRunner().invoke(_app(), ["offers", "--gpu", "A10"])
    assert r.exit_code == 1 and "did you mean A10G" in r.output
    r = CliRunner().invoke(_app(), ["offers", "--gpu", "H100", "--max-price", "1"])
    assert r.exit_code == 1 and "No offering matches" in r.output
    r = CliRunner().invoke(_app(), ["refresh", "--provider", "gcp"])
    assert r.exit_code == 1 and "only aws" in r.output


def test_cli_module_does_not_import_boto3():
    import subprocess

    src = Path(__file__).resolve().parents[2] / "src"
    code = "import sys, cumulo.catalog.cli, cumulo.catalog; print('boto3' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(src)})
    assert out.stdout.split() == ["False", "False"], out.stderr
