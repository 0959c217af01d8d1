"""This machine as a provider of exactly one machine, at $0.

"Launching" claims the machine for a node: the claim (its token, tags, time) is kept in
``$CUMULO_HOME/providers/local.json`` so ``describe`` still finds the tagged machine after the control
plane restarts. Terminating releases the claim; nothing is shut down. A second launch while the
machine is claimed, a count above one or an offering larger than this machine is a CapacityError.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from cumulo.core import settings
from cumulo.core.errors import CapacityError, InvalidSpec
from cumulo.core.machine import LOCAL, local_offering
from cumulo.core.offerings import Machine, MachineState, Offering
from cumulo.providers.base import LAUNCH_TOKEN_TAG, check_launch_args, matches_tags

REGION = INSTANCE_TYPE = LOCAL


class LocalProvider:
    name = "local"

    def __init__(self, state_path: Path | None = None, offering: Offering | None = None) -> None:
        self.state_path = state_path or settings.home() / "providers" / "local.json"
        self.offering = offering or local_offering()
        self._lock = threading.Lock()

    # -- state file ---------------------------------------------------------------------------
    def _read(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None

    def _write(self, claim: dict) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".local-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(claim, f)
        os.replace(tmp, self.state_path)

    def _machine(self, claim: dict) -> Machine:
        return Machine(
            id=claim["id"], provider=self.name, region=REGION, zone=None, instance_type=INSTANCE_TYPE,
            state=claim["state"], spot=False, tags=dict(claim["tags"]),
            launched_at=datetime.fromisoformat(claim["launched_at"]), private_ip="127.0.0.1",
            state_reason=claim.get("state_reason", ""),
        )

    # -- Provider -----------------------------------------------------------------------------
    def launch(self, offering: Offering, count: int, *, spot: bool, tags: dict[str, str],
               user_data: str | None, client_token: str) -> list[Machine]:
        check_launch_args(self.name, offering, count, tags, client_token)
        if spot:
            raise InvalidSpec("this machine has no spot market: launch it with spot=False",
                              errors=[{"field": "spot", "message": "not offered by the local provider"}])
        with self._lock:
            claim = self._read()
            if claim and claim["token"] == client_token:
                return [self._machine(claim)]
            if count > 1:
                raise CapacityError(f"the local provider is this one machine; {count} machines were asked for",
                                    scope="provider")
            mine = self.offering
            if offering.vcpus > mine.vcpus or offering.memory_gib > mine.memory_gib \
                    or offering.accelerator_count > mine.accelerator_count:
                raise CapacityError(
                    f"this machine has {mine.vcpus:g} vCPUs, {mine.memory_gib:g} GiB and "
                    f"{mine.accelerator_count} GPUs; "
                    f"the offering asks for {offering.vcpus:g}, {offering.memory_gib:g} GiB and "
                    f"{offering.accelerator_count}", scope="provider")
            if claim and claim["state"] == MachineState.RUNNING:
                raise CapacityError(f"this machine is already in use by {claim['id']} "
                                    f"(tags {claim['tags']}); release it first", scope="provider")
            digest = hashlib.sha256(client_token.encode()).hexdigest()[:12]
            claim = {
                "id": f"local-{socket.gethostname()}-{digest}", "token": client_token, "state": MachineState.RUNNING,
                "tags": {**tags, LAUNCH_TOKEN_TAG: client_token}, "launched_at": datetime.now(UTC).isoformat(),
            }
            self._write(claim)
            return [self._machine(claim)]

    def terminate(self, machine_ids: list[str], *, region: str) -> None:
        with self._lock:
            claim = self._read()
            if claim and claim["id"] in machine_ids and claim["state"] != MachineState.TERMINATED:
                self._write({**claim, "state": MachineState.TERMINATED, "state_reason": "released"})

    def describe(self, *, region: str | None = None, tags: dict[str, str] | None = None) -> list[Machine]:
        if region not in (None, REGION):
            return []
        claim = self._read()
        if claim is None or not matches_tags(claim["tags"], tags):
            return []
        return [self._machine(claim)]
