"""The Provider interface: where capacity comes from (this machine; AWS, later GCP and Azure VMs).

A provider takes core types and returns core types; it never sees the store or the control plane.
Every call is safe to repeat, so a reconciler that crashed half way can simply call again:

- ``launch`` is idempotent through ``client_token``: a second call with the same token returns the
  machines the first one started (whatever state they are in now) and never starts more. It is all
  or nothing: when it raises, nothing it started is left running.
- ``terminate`` of a machine that is already gone (or never existed) is a no-op.
- ``describe`` reports machines as the provider sees them, terminated ones included for as long as
  the provider still lists them, so the control plane can tell "gone" from "preempted".

Errors are the shared ones in ``cumulo.core.errors``: ``CapacityError`` / ``QuotaError`` /
``CredentialsError`` (all ``ProviderError``, with a ``scope`` telling placement what to rule out),
``InvalidSpec`` for a request no retry can fix (an unknown instance type, ``count <= 0``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cumulo.core.errors import InvalidSpec
from cumulo.core.offerings import Machine, Offering

# Tags the control plane puts on every machine it launches (the provider adds LAUNCH_TOKEN_TAG).
NODE_ID_TAG = "cumulo:node-id"
POOL_TAG = "cumulo:pool"
MANAGED_TAG = "cumulo:managed"
LAUNCH_TOKEN_TAG = "cumulo:launch-token"


@runtime_checkable
class Provider(Protocol):
    name: str

    def launch(self, offering: Offering, count: int, *, spot: bool, tags: dict[str, str],
               user_data: str | None, client_token: str) -> list[Machine]:
        """Start ``count`` machines of ``offering``, each tagged with ``tags``; all or nothing."""
        ...

    def terminate(self, machine_ids: list[str], *, region: str) -> None:
        """Terminate these machines; ones already gone are ignored."""
        ...

    def describe(self, *, region: str | None = None, tags: dict[str, str] | None = None) -> list[Machine]:
        """Machines carrying all of ``tags`` (every machine when None), in ``region`` or every region in use."""
        ...


def check_launch_args(provider: str, offering: Offering, count: int, tags: dict[str, str], client_token: str) -> None:
    """The argument checks every provider makes before calling out."""
    errors = []
    if offering.provider != provider:
        errors.append({"field": "offering.provider",
                       "message": f"the {provider} provider cannot launch a {offering.provider!r} offering"})
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        errors.append({"field": "count", "message": f"must be a positive whole number, got {count!r}"})
    if not client_token:
        errors.append({"field": "client_token", "message": "is required (it makes a retried launch safe)"})
    if LAUNCH_TOKEN_TAG in tags:
        errors.append({"field": "tags", "message": f"{LAUNCH_TOKEN_TAG!r} is set by the provider itself"})
    if errors:
        raise InvalidSpec("invalid launch: " + "; ".join(f"{e['field']} {e['message']}" for e in errors), errors=errors)


def matches_tags(machine_tags: dict[str, str], wanted: dict[str, str] | None) -> bool:
    return not wanted or all(machine_tags.get(k) == v for k, v in wanted.items())
