"""Providers: where capacity comes from. ``cumulo.providers.aws`` needs boto3 and is imported on its own."""

from cumulo.providers.base import LAUNCH_TOKEN_TAG, MANAGED_TAG, NODE_ID_TAG, POOL_TAG, Provider
from cumulo.providers.local import LocalProvider, local_offering

__all__ = ["LAUNCH_TOKEN_TAG", "MANAGED_TAG", "NODE_ID_TAG", "POOL_TAG", "LocalProvider", "Provider", "local_offering"]
