"""Regenerate the shipped catalog CSVs (src/cumulo/catalog/data/*.csv) from the tables below.

    python scripts/build_catalog_data.py

The tables are hand-compiled from the providers' public price lists (Linux, on-demand, per hour,
as remembered for mid-2025) for one reference region per provider; other regions apply a
per-region multiplier close to the published regional differences. Spot prices are typical
discounts for each family, varied per zone by a fixed (seeded) jitter: they are approximate and
only meant to rank markets sensibly offline. `cumulo catalog refresh --provider aws` replaces the
AWS part with live values from the AWS APIs.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

DATE = "2025-06-01"
OUT = Path(__file__).resolve().parents[1] / "src" / "cumulo" / "catalog" / "data"
HEADER = ["provider", "region", "zone", "instance_type", "vcpus", "memory_gib", "accelerator",
          "accelerator_count", "accelerator_memory_gib", "price", "spot_price"]

# name, vcpus, memory GiB, accelerator, count, accelerator memory GiB, on-demand $/h (reference region)
AWS = {
    "g4dn": [("g4dn.xlarge", 4, 16, "T4", 1, 16, 0.526), ("g4dn.2xlarge", 8, 32, "T4", 1, 16, 0.752),
             ("g4dn.4xlarge", 16, 64, "T4", 1, 16, 1.204), ("g4dn.8xlarge", 32, 128, "T4", 1, 16, 2.176),
             ("g4dn.12xlarge", 48, 192, "T4", 4, 16, 3.912), ("g4dn.16xlarge", 64, 256, "T4", 1, 16, 4.352),
             ("g4dn.metal", 96, 384, "T4", 8, 16, 7.824)],
    "g5": [("g5.xlarge", 4, 16, "A10G", 1, 24, 1.006), ("g5.2xlarge", 8, 32, "A10G", 1, 24, 1.212),
           ("g5.4xlarge", 16, 64, "A10G", 1, 24, 1.624), ("g5.8xlarge", 32, 128, "A10G", 1, 24, 2.448),
           ("g5.12xlarge", 48, 192, "A10G", 4, 24, 5.672), ("g5.16xlarge", 64, 256, "A10G", 1, 24, 4.096),
           ("g5.24xlarge", 96, 384, "A10G", 4, 24, 8.144), ("g5.48xlarge", 192, 768, "A10G", 8, 24, 16.288)],
    "g6": [("g6.xlarge", 4, 16, "L4", 1, 24, 0.8048), ("g6.2xlarge", 8, 32, "L4", 1, 24, 0.9776),
           ("g6.4xlarge", 16, 64, "L4", 1, 24, 1.3232), ("g6.8xlarge", 32, 128, "L4", 1, 24, 2.0144),
           ("g6.12xlarge", 48, 192, "L4", 4, 24, 4.6016), ("g6.16xlarge", 64, 256, "L4", 1, 24, 3.3968),
           ("g6.24xlarge", 96, 384, "L4", 4, 24, 6.6752), ("g6.48xlarge", 192, 768, "L4", 8, 24, 13.3504)],
    "p3": [("p3.2xlarge", 8, 61, "V100", 1, 16, 3.06), ("p3.8xlarge", 32, 244, "V100", 4, 16, 12.24),
           ("p3.16xlarge", 64, 488, "V100", 8, 16, 24.48), ("p3dn.24xlarge", 96, 768, "V100-32GB", 8, 32, 31.212)],
    "p4d": [("p4d.24xlarge", 96, 1152, "A100", 8, 40, 32.7726),
            ("p4de.24xlarge", 96, 1152, "A100-80GB", 8, 80, 40.9657)],
    "p5": [("p5.48xlarge", 192, 2048, "H100", 8, 80, 98.32)],
    "m5": [(f"m5.{s}", v, v * 4, None, 0, 0, round(0.048 * v, 4)) for s, v in
           [("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32), ("12xlarge", 48),
            ("16xlarge", 64), ("24xlarge", 96)]],
    "m6i": [(f"m6i.{s}", v, v * 4, None, 0, 0, round(0.048 * v, 4)) for s, v in
            [("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32), ("16xlarge", 64),
             ("32xlarge", 128)]],
    "c5": [(f"c5.{s}", v, v * 2, None, 0, 0, round(0.0425 * v, 4)) for s, v in
           [("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("9xlarge", 36), ("12xlarge", 48),
            ("18xlarge", 72), ("24xlarge", 96)]],
    "r5": [(f"r5.{s}", v, v * 8, None, 0, 0, round(0.063 * v, 4)) for s, v in
           [("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32), ("12xlarge", 48),
            ("16xlarge", 64), ("24xlarge", 96)]],
    "t3": [("t3.medium", 2, 4, None, 0, 0, 0.0416), ("t3.large", 2, 8, None, 0, 0, 0.0832),
           ("t3.xlarge", 4, 16, None, 0, 0, 0.1664), ("t3.2xlarge", 8, 32, None, 0, 0, 0.3328)],
}
# region: (zones, CPU multiplier, GPU multiplier)
AWS_REGIONS = {
    "us-east-1": ("abcdf", 1.0, 1.0), "us-east-2": ("abc", 1.0, 1.0), "us-west-2": ("abcd", 1.0, 1.0),
    "eu-west-1": ("abc", 1.115, 1.12), "eu-central-1": ("abc", 1.2, 1.25), "ap-northeast-1": ("acd", 1.29, 1.35),
}
AWS_FAMILY_REGIONS = {  # where a GPU family is offered (approximate), and in how many zones
    "p3": (["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"], 2),
    "p4d": (["us-east-1", "us-west-2", "eu-central-1", "ap-northeast-1"], 2),
    "p5": (["us-east-1", "us-east-2", "us-west-2", "ap-northeast-1"], 2),
    "g6": (["us-east-1", "us-east-2", "us-west-2", "eu-central-1"], 3),
}
AWS_SPOT = {"g4dn": 0.32, "g5": 0.38, "g6": 0.42, "p3": 0.31, "p4d": 0.45, "p5": 0.55,
            "m5": 0.42, "m6i": 0.40, "c5": 0.40, "r5": 0.33, "t3": 0.31}

GCP = {
    "a2": [("a2-highgpu-1g", 12, 85, "A100", 1, 40, 3.6731), ("a2-highgpu-2g", 24, 170, "A100", 2, 40, 7.3461),
           ("a2-highgpu-4g", 48, 340, "A100", 4, 40, 14.6923), ("a2-highgpu-8g", 96, 680, "A100", 8, 40, 29.3846),
           ("a2-megagpu-16g", 96, 1360, "A100", 16, 40, 55.7395),
           ("a2-ultragpu-1g", 12, 170, "A100-80GB", 1, 80, 5.0688), ("a2-ultragpu-2g", 24, 340, "A100-80GB", 2, 80, 10.1376),
           ("a2-ultragpu-4g", 48, 680, "A100-80GB", 4, 80, 20.2752),
           ("a2-ultragpu-8g", 96, 1360, "A100-80GB", 8, 80, 40.5504)],
    "a3": [("a3-highgpu-8g", 208, 1872, "H100", 8, 80, 88.2492)],
    "g2": [("g2-standard-4", 4, 16, "L4", 1, 24, 0.7068), ("g2-standard-8", 8, 32, "L4", 1, 24, 0.8536),
           ("g2-standard-12", 12, 48, "L4", 1, 24, 1.0004), ("g2-standard-16", 16, 64, "L4", 1, 24, 1.1472),
           ("g2-standard-24", 24, 96, "L4", 2, 24, 2.0008), ("g2-standard-32", 32, 128, "L4", 1, 24, 1.7336),
           ("g2-standard-48", 48, 192, "L4", 4, 24, 4.0016), ("g2-standard-96", 96, 384, "L4", 8, 24, 8.0032)],
    # GCP attaches T4/V100 to N1 machines: named "<machine type>+<count>x<GPU>" here
    "n1-gpu": [("n1-standard-4+1xT4", 4, 15, "T4", 1, 16, 0.54), ("n1-standard-8+1xT4", 8, 30, "T4", 1, 16, 0.73),
               ("n1-standard-16+2xT4", 16, 60, "T4", 2, 16, 1.46), ("n1-standard-32+4xT4", 32, 120, "T4", 4, 16, 2.92),
               ("n1-standard-8+1xV100", 8, 30, "V100", 1, 16, 2.86),
               ("n1-standard-16+2xV100", 16, 60, "V100", 2, 16, 5.72),
               ("n1-standard-32+4xV100", 32, 120, "V100", 4, 16, 11.44),
               ("n1-standard-64+8xV100", 64, 240, "V100", 8, 16, 22.88)],
    "n1": [(f"n1-standard-{v}", v, v * 3.75, None, 0, 0, round(0.0475 * v, 4)) for v in (2, 4, 8, 16, 32, 64)],
    "n2": [(f"n2-standard-{v}", v, v * 4, None, 0, 0, round(0.048556 * v, 4)) for v in (2, 4, 8, 16, 32, 64)],
    "e2": [(f"e2-standard-{v}", v, v * 4, None, 0, 0, round(0.033503 * v, 4)) for v in (2, 4, 8, 16, 32)],
    "c2": [(f"c2-standard-{v}", v, v * 4, None, 0, 0, round(0.0522 * v, 4)) for v in (4, 8, 16, 30, 60)],
}
GCP_REGIONS = {
    "us-central1": ("a,b,c,f", 1.0, 1.0), "us-east1": ("b,c,d", 1.0, 1.0), "us-west1": ("a,b,c", 1.0, 1.0),
    "europe-west4": ("a,b,c", 1.1, 1.08), "asia-northeast1": ("a,b,c", 1.28, 1.3),
}
GCP_FAMILY_REGIONS = {
    "a2": (["us-central1", "us-east1", "us-west1", "europe-west4", "asia-northeast1"], 2),
    "a3": (["us-central1", "us-east1", "europe-west4"], 2),
    "g2": (["us-central1", "us-east1", "us-west1", "europe-west4", "asia-northeast1"], 2),
    "n1-gpu": (["us-central1", "us-east1", "us-west1", "europe-west4", "asia-northeast1"], 3),
}
GCP_SPOT = {"a2": 0.33, "a3": 0.40, "g2": 0.40, "n1-gpu": 0.32, "n1": 0.21, "n2": 0.32, "e2": 0.31, "c2": 0.24}

AZURE = {
    "NCasT4_v3": [("Standard_NC4as_T4_v3", 4, 28, "T4", 1, 16, 0.526), ("Standard_NC8as_T4_v3", 8, 56, "T4", 1, 16, 0.752),
                  ("Standard_NC16as_T4_v3", 16, 110, "T4", 1, 16, 1.204),
                  ("Standard_NC64as_T4_v3", 64, 440, "T4", 4, 16, 4.352)],
    "NCadsA100_v4": [("Standard_NC24ads_A100_v4", 24, 220, "A100-80GB", 1, 80, 3.673),
                     ("Standard_NC48ads_A100_v4", 48, 440, "A100-80GB", 2, 80, 7.346),
                     ("Standard_NC96ads_A100_v4", 96, 880, "A100-80GB", 4, 80, 14.692)],
    "NDasrA100_v4": [("Standard_ND96asr_v4", 96, 900, "A100", 8, 40, 27.197),
                     ("Standard_ND96amsr_A100_v4", 96, 1900, "A100-80GB", 8, 80, 32.77)],
    "NDH100_v5": [("Standard_ND96isr_H100_v5", 96, 1900, "H100", 8, 80, 98.32)],
    "Dsv5": [(f"Standard_D{v}s_v5", v, v * 4, None, 0, 0, round(0.048 * v, 4)) for v in (2, 4, 8, 16, 32, 64)],
    "Esv5": [(f"Standard_E{v}s_v5", v, v * 8, None, 0, 0, round(0.063 * v, 4)) for v in (2, 4, 8, 16, 32, 64)],
    "Fsv2": [(f"Standard_F{v}s_v2", v, v * 2, None, 0, 0, round(0.04225 * v, 4)) for v in (2, 4, 8, 16, 32, 64)],
}
AZURE_REGIONS = {
    "eastus": ("1,2,3", 1.0, 1.0), "westus2": ("1,2,3", 1.0, 1.0), "southcentralus": ("1,2,3", 1.0, 1.02),
    "westeurope": ("1,2,3", 1.12, 1.12), "japaneast": ("1,2,3", 1.27, 1.3),
}
AZURE_FAMILY_REGIONS = {
    "NCadsA100_v4": (["eastus", "westus2", "southcentralus", "westeurope"], 2),
    "NDasrA100_v4": (["eastus", "westus2", "southcentralus", "westeurope", "japaneast"], 2),
    "NDH100_v5": (["eastus", "westus2", "southcentralus", "westeurope"], 2),
}
AZURE_SPOT = {"NCasT4_v3": 0.30, "NCadsA100_v4": 0.35, "NDasrA100_v4": 0.40, "NDH100_v5": 0.50,
              "Dsv5": 0.30, "Esv5": 0.30, "Fsv2": 0.28}


def jitter(*key: str) -> float:
    """A fixed pseudo-random factor in [0.9, 1.1] per key (so each zone's spot price differs)."""
    h = int(hashlib.sha256("/".join(key).encode()).hexdigest()[:8], 16)
    return 0.9 + 0.2 * (h / 0xFFFFFFFF)


def zones_of(provider: str, region: str, spec: str) -> list[str]:
    if provider == "aws":
        return [region + z for z in spec]
    if provider == "gcp":
        return [f"{region}-{z}" for z in spec.split(",")]
    return [f"{region}-{z}" for z in spec.split(",")]  # Azure: eastus-1 (region + logical zone)


def build(provider, families, regions, family_regions, spot) -> list[list]:
    rows = []
    for family, types in families.items():
        where, nzones = family_regions.get(family, (list(regions), None))
        for region in where:
            zspec, cpu_mult, gpu_mult = regions[region]
            zones = zones_of(provider, region, zspec)
            if nzones is not None:  # GPU families: only some zones of a region have them
                start = int(hashlib.sha256(f"{family}/{region}".encode()).hexdigest()[:4], 16) % len(zones)
                zones = [zones[(start + i) % len(zones)] for i in range(min(nzones, len(zones)))]
            for name, vcpus, mem, acc, count, accmem, price in types:
                od = round(price * (gpu_mult if acc else cpu_mult), 4)
                for zone in sorted(zones):
                    sp = round(od * spot[family] * jitter(provider, name, zone), 4)
                    rows.append([provider, region, zone, name, vcpus, mem, acc or "", count, accmem, od, sp])
    rows.sort(key=lambda r: (r[1], r[2], r[3]))
    return rows


def write(provider: str, rows: list[list], source: str) -> None:
    path = OUT / f"{provider}.csv"
    with path.open("w", newline="") as f:
        f.write(f"# source: {source}\n# date: {DATE}\n# approximate: yes (not a price quote)\n")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows)
    print(f"{path}: {len(rows)} offerings")


if __name__ == "__main__":
    write("aws", build("aws", AWS, AWS_REGIONS, AWS_FAMILY_REGIONS, AWS_SPOT),
          "hand-compiled from aws.amazon.com/ec2/pricing/on-demand (Linux, us-east-1 reference, regional "
          "multipliers); spot = typical family discount with per-zone jitter")
    write("gcp", build("gcp", GCP, GCP_REGIONS, GCP_FAMILY_REGIONS, GCP_SPOT),
          "hand-compiled from cloud.google.com/compute/vm-instance-pricing and /gpus-pricing (us-central1 "
          "reference, regional multipliers); spot = typical family discount with per-zone jitter")
    write("azure", build("azure", AZURE, AZURE_REGIONS, AZURE_FAMILY_REGIONS, AZURE_SPOT),
          "hand-compiled from azure.microsoft.com/pricing/details/virtual-machines/linux (eastus reference, "
          "regional multipliers); spot = typical family discount with per-zone jitter")
