"""The catalog: priced offerings of AWS, GCP, Azure and this machine, shipped as package data.

`load_catalog()` reads the shipped CSVs (`data/<provider>.csv`, each with its source and date in
its header comments) or, where `cumulo catalog refresh` wrote one, the refreshed copy under
`$CUMULO_HOME/catalog/`. Nothing here touches the network except `refresh_aws`, which is imported
on first use so that `import cumulo.catalog` stays light (no boto3).
"""

from __future__ import annotations

from typing import Any

from cumulo.catalog._data import (
    PROVIDERS,
    catalog_sources,
    clear_cache,
    filter_offerings,
    find_instance_type,
    load_catalog,
    local_offering,
    parse_accelerator,
    read_csv,
    user_catalog_dir,
    write_csv,
)

__all__ = [
    "PROVIDERS", "catalog_sources", "clear_cache", "filter_offerings", "find_instance_type", "load_catalog",
    "local_offering", "parse_accelerator", "read_csv", "refresh_aws", "user_catalog_dir", "write_csv",
]


def __getattr__(name: str) -> Any:
    if name == "refresh_aws":  # boto3 is loaded only by the one command that needs it
        from cumulo.catalog.aws import refresh_aws

        return refresh_aws
    raise AttributeError(name)
