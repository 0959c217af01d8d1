"""What users import: Client (everything the CLI does), report() for training metrics."""

from cumulo.sdk.client import Client
from cumulo.sdk.report import report
from cumulo.sdk.specs import load_spec

__all__ = ["Client", "load_spec", "report"]
