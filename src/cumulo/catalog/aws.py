"""Rebuild the AWS part of the catalog from AWS's own APIs (boto3, standard configuration).

boto3 finds credentials, region and endpoint the usual way (the credential chain, AWS_REGION /
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_EC2), so pointing it at an emulator such
as moto's server needs no special code path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from cumulo.catalog._data import clear_cache, load_catalog, user_catalog_dir, write_csv
from cumulo.core.errors import CredentialsError, ProviderError
from cumulo.core.offerings import Offering

# The families the catalog tracks (GPU families of issue 5 plus common CPU types).
FAMILIES = ("g4dn", "g5", "g6", "p3", "p3dn", "p4d", "p4de", "p5", "m5", "m6i", "c5", "r5", "t3")
_AUTH_CODES = {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
               "UnrecognizedClientException", "ExpiredToken", "AccessDenied", "AccessDeniedException"}
_CHUNK = 100  # values per filter


def _chunks(items: Sequence[str], n: int = _CHUNK) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield list(items[i:i + n])


def _gpu_name(gpu: dict[str, Any]) -> str:
    name = str(gpu.get("Name", ""))
    mib = gpu.get("MemoryInfo", {}).get("SizeInMiB", 0)
    if name == "A100" and mib >= 80 * 1024:
        return "A100-80GB"
    if name == "V100" and mib >= 32 * 1024:
        return "V100-32GB"
    return name


def _describe_types(ec2: Any, families: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    pages = ec2.get_paginator("describe_instance_types").paginate(
        Filters=[{"Name": "instance-type", "Values": [f"{f}.*" for f in families]}])
    for page in pages:
        for it in page["InstanceTypes"]:
            name = it["InstanceType"]
            if name.split(".", 1)[0] not in families:
                continue
            gpus = it.get("GpuInfo", {}).get("Gpus", [])
            out[name] = {
                "vcpus": float(it["VCpuInfo"]["DefaultVCpus"]),
                "memory_gib": round(it["MemoryInfo"]["SizeInMiB"] / 1024, 2),
                "accelerator": _gpu_name(gpus[0]) if gpus else None,
                "accelerator_count": sum(int(g.get("Count", 0)) for g in gpus),
                "accelerator_memory_gib": round(gpus[0].get("MemoryInfo", {}).get("SizeInMiB", 0) / 1024, 2) if gpus else 0.0,
            }
    return out


def _zones(ec2: Any, names: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for chunk in _chunks(sorted(names)):
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": chunk}])
        for page in pages:
            for o in page["InstanceTypeOfferings"]:
                out.setdefault(o["InstanceType"], []).append(o["Location"])
    return out


def _spot_prices(ec2: Any, names: Sequence[str], now: datetime) -> dict[tuple[str, str], float]:
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    for chunk in _chunks(sorted(names)):
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=chunk, ProductDescriptions=["Linux/UNIX"], StartTime=now)
        for page in pages:
            for h in page["SpotPriceHistory"]:
                key = (h["InstanceType"], h["AvailabilityZone"])
                ts = h["Timestamp"]
                if key not in latest or ts > latest[key][0]:
                    latest[key] = (ts, float(h["SpotPrice"]))
    return {k: v[1] for k, v in latest.items()}


def _on_demand_prices(session: Any, region: str, names: set[str]) -> dict[str, float]:
    """Linux/shared on-demand prices from the Pricing API (served from us-east-1). Raises when the
    API is not reachable (e.g. an emulator without it); the caller then keeps the shipped prices."""
    pricing = session.client("pricing", region_name="us-east-1",
                             config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30))
    filters = [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in (
        ("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
        ("preInstalledSw", "NA"), ("capacitystatus", "Used"), ("licenseModel", "No License required"))]
    out: dict[str, float] = {}
    for page in pricing.get_paginator("get_products").paginate(ServiceCode="AmazonEC2", Filters=filters):
        for raw in page["PriceList"]:
            item = json.loads(raw) if isinstance(raw, str) else raw
            name = item.get("product", {}).get("attributes", {}).get("instanceType")
            if name not in names:
                continue
            for term in item.get("terms", {}).get("OnDemand", {}).values():
                for dim in term.get("priceDimensions", {}).values():
                    usd = float(dim.get("pricePerUnit", {}).get("USD", 0) or 0)
                    if usd > 0:
                        out[name] = usd
    return out


def _translate(e: Exception) -> Exception:
    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsError(f"AWS credentials not found ({e}); configure them as for the aws CLI "
                                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)",
                                scope="provider")
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        if code in _AUTH_CODES:
            return CredentialsError(f"AWS rejected the credentials: {code}: {e}", scope="provider")
        return ProviderError(f"AWS error while refreshing the catalog: {e}")
    return ProviderError(f"could not reach AWS while refreshing the catalog: {e}", scope="provider")


def refresh_aws(
    session: Any = None,
    regions: Sequence[str] | None = None,
    *,
    families: Sequence[str] = FAMILIES,
    out: Path | None = None,
    now: datetime | None = None,
) -> list[Offering]:
    """Rebuild the AWS offerings of `regions` (default: the regions the current catalog has) from
    DescribeInstanceTypes, DescribeInstanceTypeOfferings (per availability zone) and
    DescribeSpotPriceHistory, with on-demand prices from the Pricing API where it answers and the
    current catalog's prices elsewhere; writes them to `out` (default `$CUMULO_HOME/catalog/aws.csv`,
    which then replaces the shipped file) and returns them. A type with no known on-demand price
    is left out."""
    session = session or boto3.Session()
    now = now or datetime.now(UTC)
    current = load_catalog(["aws"])
    shipped_price = {(o.region, o.instance_type): o.price for o in current}
    regions = list(regions) if regions else sorted({o.region for o in current})
    offerings: list[Offering] = []
    pricing_ok: bool | None = None
    skipped = 0
    try:
        for region in regions:
            ec2 = session.client("ec2", region_name=region)
            types = _describe_types(ec2, families)
            zones = _zones(ec2, list(types))
            spot = _spot_prices(ec2, list(zones), now)
            od: dict[str, float] = {}
            if pricing_ok is not False:
                try:
                    od = _on_demand_prices(session, region, set(zones))
                    pricing_ok = True
                except (BotoCoreError, ClientError):
                    pricing_ok = False  # not reachable here (an emulator, a closed network): keep shipped prices
            for name in sorted(zones):
                price = od.get(name) or shipped_price.get((region, name))
                if price is None:
                    skipped += 1
                    continue
                t = types[name]
                for zone in sorted(zones[name]):
                    offerings.append(Offering(provider="aws", region=region, zone=zone, instance_type=name,
                                              price=price, spot_price=spot.get((name, zone)), **t))
    except (BotoCoreError, ClientError) as e:
        raise _translate(e) from e
    endpoint = session.client("ec2", region_name=regions[0]).meta.endpoint_url if regions else ""
    meta = {
        "source": f"AWS APIs via boto3 ({endpoint}): DescribeInstanceTypes, DescribeInstanceTypeOfferings, "
                  "DescribeSpotPriceHistory; on-demand prices from "
                  + ("the Pricing API" if pricing_ok else "the shipped catalog (Pricing API not reachable)"),
        "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "regions": " ".join(regions),
        "skipped_types_without_price": str(skipped),
    }
    write_csv(out or user_catalog_dir() / "aws.csv", offerings, meta)
    clear_cache()
    return offerings
