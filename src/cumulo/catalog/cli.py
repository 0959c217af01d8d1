"""`cumulo offers` and `cumulo catalog refresh`: Typer command functions (the CLI registers them).

Importing this module loads no cloud SDK: `refresh` imports boto3 only when it runs.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cumulo.catalog._data import catalog_sources, filter_offerings, load_catalog
from cumulo.core.errors import CumuloError
from cumulo.core.offerings import Offering

_err = Console(stderr=True)


def offering_dict(o: Offering, spot: bool = False) -> dict:
    """The stable JSON shape of one offering (`--json`)."""
    return {
        "provider": o.provider, "region": o.region, "zone": o.zone, "instance_type": o.instance_type,
        "vcpus": o.vcpus, "memory_gib": o.memory_gib, "accelerator": o.accelerator,
        "accelerator_count": o.accelerator_count, "accelerator_memory_gib": o.accelerator_memory_gib,
        "price": o.price, "spot_price": o.spot_price, "market": "spot" if spot else "on-demand",
        "hourly": o.spot_price if spot else o.price,
    }


def _fail(e: CumuloError) -> None:
    _err.print(f"[red]Error:[/] {e.message}")
    raise typer.Exit(1)


def offers(
    gpu: Annotated[str | None, typer.Option("--gpu", help="accelerator NAME or NAME:COUNT, e.g. A100:8")] = None,
    spot: Annotated[bool, typer.Option("--spot", help="spot prices; only offerings with a spot market")] = False,
    provider: Annotated[list[str] | None, typer.Option("--provider", "-p", help="aws, gcp, azure or local (repeatable)")] = None,
    region: Annotated[list[str] | None, typer.Option("--region", "-r", help="region (repeatable)")] = None,
    instance_type: Annotated[str | None, typer.Option("--instance-type", "-t", help="one instance type")] = None,
    max_price: Annotated[float | None, typer.Option("--max-price", help="at most this $/hour")] = None,
    limit: Annotated[int, typer.Option("--limit", help="rows shown in the table (0: all); --json shows all")] = 50,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List catalog offerings, cheapest first (prices are approximate; see `cumulo catalog refresh`)."""
    try:
        rows = filter_offerings(load_catalog(provider or None), gpu=gpu, spot=spot, region=region or None,
                                instance_type=instance_type, max_price=max_price)
    except CumuloError as e:
        _fail(e)
        return
    key = (lambda o: (o.spot_price, o.provider, o.region, o.zone or "", o.instance_type)) if spot else \
        (lambda o: (o.price, o.provider, o.region, o.zone or "", o.instance_type))
    rows.sort(key=key)
    if json_:
        sys.stdout.write(json.dumps([offering_dict(o, spot) for o in rows], indent=2) + "\n")
        return
    if not rows:
        _err.print("No offering matches these filters.")
        raise typer.Exit(1)
    table = Table(title=f"{len(rows)} offerings" + (f" (first {limit})" if limit and len(rows) > limit else ""))
    for col in ("PROVIDER", "REGION", "ZONE", "INSTANCE TYPE", "vCPU", "MEMORY", "ACCELERATORS", "$/h" + (" spot" if spot else "")):
        table.add_column(col, justify="right" if col in ("vCPU", "MEMORY") or col.startswith("$") else "left")
    for o in rows[:limit or None]:
        acc = f"{o.accelerator_count}x {o.accelerator} ({o.accelerator_memory_gib:g} GiB)" if o.accelerator else "-"
        table.add_row(o.provider, o.region, o.zone or "-", o.instance_type, f"{o.vcpus:g}", f"{o.memory_gib:g} GiB",
                      acc, f"{(o.spot_price if spot else o.price):.4f}")
    Console().print(table)


def refresh(
    provider: Annotated[str, typer.Option("--provider", help="only aws can be refreshed today")] = "aws",
    regions: Annotated[list[str] | None, typer.Option("--region", "-r", help="region (repeatable; default: the catalog's)")] = None,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Rebuild a provider's offerings from its own APIs into $CUMULO_HOME/catalog/ (AWS: boto3's usual
    credentials, region and AWS_ENDPOINT_URL)."""
    if provider != "aws":
        _fail(CumuloError(f"cannot refresh {provider!r}: only aws has a refresh today "
                          "(gcp and azure use the shipped catalog)"))
    from cumulo.catalog.aws import refresh_aws  # boto3 is loaded only here

    try:
        offerings = refresh_aws(regions=regions or None)
    except CumuloError as e:
        _fail(e)
        return
    meta = catalog_sources()["aws"]
    summary = {"provider": "aws", "offerings": len(offerings), "instance_types": len({o.instance_type for o in offerings}),
               "regions": sorted({o.region for o in offerings}), "file": meta.get("file"),
               "source": meta.get("source"), "date": meta.get("date")}
    if json_:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        Console().print(f"Refreshed aws: {summary['offerings']} offerings of {summary['instance_types']} instance types in "
                        f"{len(summary['regions'])} regions -> {summary['file']}\n{summary['source']}")
