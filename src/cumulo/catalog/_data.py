"""Reading, writing, looking up and filtering offerings. No network."""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from cumulo.core.errors import InvalidSpec, NotFound
from cumulo.core.machine import local_offering
from cumulo.core.offerings import Offering
from cumulo.core.offerings import parse_accelerator as _parse_accelerator
from cumulo.core.settings import home

PROVIDERS = ("aws", "gcp", "azure", "local", "local-vm")
CLOUDS = ("aws", "gcp", "azure")
#: made-up machines on this host (providers/local_vm.py), priced in data/local-vm.csv
LOCAL_VM = "local-vm"
HEADER = ["provider", "region", "zone", "instance_type", "vcpus", "memory_gib", "accelerator",
          "accelerator_count", "accelerator_memory_gib", "price", "spot_price"]

_cache: dict[tuple[str, str, float], tuple[list[Offering], dict[str, str]]] = {}


def user_catalog_dir() -> Path:
    """Where `cumulo catalog refresh` writes; a file here replaces the shipped one."""
    return home() / "catalog"


def _source(provider: str) -> tuple[str, float, str]:
    """(label, mtime, text) of the CSV that load_catalog reads for a cloud provider (or local-vm)."""
    user = user_catalog_dir() / f"{provider}.csv"
    if user.is_file():
        return str(user), user.stat().st_mtime, user.read_text()
    res = resources.files("cumulo.catalog") / "data" / f"{provider}.csv"
    return f"package:cumulo/catalog/data/{provider}.csv", 0.0, res.read_text()


def _num(value: str, field: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidSpec(f"{where}: {field} is not a number: {value!r}") from None


def read_csv(text: str, where: str = "catalog") -> tuple[list[Offering], dict[str, str]]:
    """Parse a catalog CSV: `# key: value` comment lines (source, date), a header, then rows."""
    meta: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            meta[key.strip()] = value.strip()
        elif line.strip():
            lines.append(line)
    reader = csv.DictReader(lines)
    if reader.fieldnames != HEADER:
        raise InvalidSpec(f"{where}: header must be {','.join(HEADER)}, got {reader.fieldnames}")
    out = []
    for i, row in enumerate(reader, start=2):
        at = f"{where} row {i}"
        spot = row["spot_price"].strip()
        out.append(Offering(
            provider=row["provider"], region=row["region"], zone=row["zone"] or None,
            instance_type=row["instance_type"], vcpus=_num(row["vcpus"], "vcpus", at),
            memory_gib=_num(row["memory_gib"], "memory_gib", at), accelerator=row["accelerator"] or None,
            accelerator_count=int(_num(row["accelerator_count"], "accelerator_count", at)),
            accelerator_memory_gib=_num(row["accelerator_memory_gib"], "accelerator_memory_gib", at),
            price=_num(row["price"], "price", at), spot_price=_num(spot, "spot_price", at) if spot else None,
        ))
    return out, meta


def write_csv(path: Path, offerings: Iterable[Offering], meta: dict[str, str]) -> None:
    """Write a catalog CSV atomically (temp file + rename), meta as `# key: value` lines."""
    buf = io.StringIO()
    for key, value in meta.items():
        buf.write(f"# {key}: {value}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for o in sorted(offerings, key=lambda o: (o.region, o.zone or "", o.instance_type)):
        w.writerow([o.provider, o.region, o.zone or "", o.instance_type, f"{o.vcpus:g}", f"{o.memory_gib:g}",
                    o.accelerator or "", o.accelerator_count, f"{o.accelerator_memory_gib:g}", f"{o.price:g}",
                    "" if o.spot_price is None else f"{o.spot_price:g}"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


def clear_cache() -> None:
    _cache.clear()


def _load_provider(provider: str) -> tuple[list[Offering], dict[str, str]]:
    label, mtime, text = _source(provider)
    key = (provider, label, mtime)
    if key not in _cache:
        offerings, meta = read_csv(text, label)
        meta["file"] = label
        _cache[key] = (offerings, meta)
    return _cache[key]


def load_catalog(providers: Sequence[str] | str | None = None) -> list[Offering]:
    """Every offering of the given providers (default: all of aws, gcp, azure, local, local-vm)."""
    wanted = _providers(providers)
    out: list[Offering] = []
    for p in wanted:
        out.extend([local_offering()] if p == "local" else _load_provider(p)[0])
    return out


def catalog_sources() -> dict[str, dict[str, str]]:
    """Per cloud provider: which file is read, its source and date."""
    return {p: dict(_load_provider(p)[1]) for p in CLOUDS}


def _providers(providers: Sequence[str] | str | None) -> list[str]:
    if providers is None:
        return list(PROVIDERS)
    if isinstance(providers, str):
        providers = [providers]
    out = []
    for p in providers:
        p = p.strip().lower()
        if p not in PROVIDERS:
            raise NotFound(f"unknown provider {p!r}; known providers: {', '.join(PROVIDERS)}")
        out.append(p)
    return out


def _family(name: str) -> str:
    """The family part of an instance type name: g4dn.xlarge -> g4dn, a2-highgpu-1g -> a2-highgpu,
    Standard_NC4as_T4_v3 -> Standard_NC."""
    if "." in name:
        return name.split(".", 1)[0]
    if name.startswith("Standard_"):
        m = re.match(r"Standard_[A-Z]+", name)
        return m.group(0) if m else name
    return name.rsplit("-", 1)[0]


def find_instance_type(provider: str, name: str) -> list[Offering]:
    """Every offering (region/zone) of one instance type, cheapest first. NotFound names the closest
    types that exist: "unknown instance type 'g4dn.medium' for aws; did you mean g4dn.xlarge, ...?"."""
    (provider,) = _providers([provider])
    offerings = load_catalog([provider])
    found = [o for o in offerings if o.instance_type == name]
    if not found:  # the clouds' names are case-sensitive, but forgive the case
        found = [o for o in offerings if o.instance_type.lower() == name.lower()]
    if found:
        return sorted(found, key=lambda o: (o.price, o.region, o.zone or ""))
    raise NotFound(f"unknown instance type {name!r} for {provider}; {_suggest(name, offerings)}")


def _suggest(name: str, offerings: Sequence[Offering], limit: int = 4) -> str:
    sizes: dict[str, tuple[float, float]] = {}
    for o in offerings:
        sizes.setdefault(o.instance_type, (o.vcpus, o.price))
    family = _family(name).lower()
    same = sorted((n for n in sizes if _family(n).lower() == family), key=lambda n: (sizes[n], n))
    if not same:
        same = difflib.get_close_matches(name, list(sizes), n=limit + 1, cutoff=0.5)
    if not same:
        return "`cumulo offers` lists the known types"
    more = ", ..." if len(same) > limit else ""
    return f"did you mean {', '.join(same[:limit])}{more}?"




def parse_accelerator(text: str) -> tuple[str, int | None]:
    """'A100:8' -> ('A100', 8); 'T4' -> ('T4', None) (any count)."""
    return _parse_accelerator(text, field="gpu")


def filter_offerings(
    offerings: Iterable[Offering],
    *,
    provider: Sequence[str] | str | None = None,
    region: Sequence[str] | str | None = None,
    zone: str | None = None,
    instance_type: str | None = None,
    gpu: str | None = None,
    min_vcpus: float = 0,
    min_memory_gib: float = 0,
    spot: bool = False,
    max_price: float | None = None,
) -> list[Offering]:
    """Offerings matching every given filter. `gpu` is NAME or NAME:COUNT (exact count, name
    case-insensitive); an unknown accelerator name is InvalidSpec with the closest known names.
    `spot` keeps only offerings with a spot market and compares `max_price` with the spot price."""
    offerings = list(offerings)
    providers = set(_providers(provider)) if provider else None
    regions = {region} if isinstance(region, str) else set(region) if region else None
    acc_name, acc_count = parse_accelerator(gpu) if gpu else (None, None)
    if acc_name is not None:
        known = {o.accelerator for o in offerings if o.accelerator}
        by_lower = {k.lower(): k for k in known}
        if acc_name.lower() not in by_lower:
            close = difflib.get_close_matches(acc_name.upper(), sorted(known), n=4, cutoff=0.4)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
            raise InvalidSpec(f"unknown accelerator {acc_name!r}; {hint}",
                              errors=[{"field": "gpu", "message": f"unknown accelerator {acc_name!r}"}])
        acc_name = by_lower[acc_name.lower()]
    out = []
    for o in offerings:
        if providers is not None and o.provider not in providers:
            continue
        if regions is not None and o.region not in regions:
            continue
        if zone is not None and o.zone != zone:
            continue
        if instance_type is not None and o.instance_type.lower() != instance_type.lower():
            continue
        if acc_name is not None and (o.accelerator != acc_name or (acc_count is not None and o.accelerator_count != acc_count)):
            continue
        if o.vcpus < min_vcpus or o.memory_gib < min_memory_gib:
            continue
        if spot and o.spot_price is None:
            continue
        if max_price is not None and (o.spot_price if spot else o.price) > max_price:  # type: ignore[operator]
            continue
        out.append(o)
    return out
