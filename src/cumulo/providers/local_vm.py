"""local-vm: made-up machines on this host, for tests and demos, priced in the catalog's local-vm.csv.

"Launching" a machine runs its user-data (the very bootstrap script EC2 gets, providers/bootstrap.py)
in a sandboxed process: its own session, its own folder under ``$CUMULO_HOME/providers/local-vm/``
(the script, its console log, the machine record), its own loopback address (127.0.0.10 and up,
never one a live machine or another Ray process on this host holds: claims are files under
``$CUMULO_LOCAL_VM_IPS``, default ``/tmp/cumulo-local-vm/ips``, taken under a lock), and an
environment made only of what the script needs (never the control plane's). The shape's CPUs,
GPUs and memory are what the node declares to Ray (logical resources: this host's cores are shared).
A machine launched without user-data runs ``sleep infinity``: it exists, and joins nothing.

- ``launch`` is idempotent by ``client_token`` (the machine id is derived from it) and all or nothing.
- ``terminate`` records the termination, then SIGTERMs every process of the machine's session (Ray's
  own processes make process groups of their own, so a process group would miss them) and SIGKILLs
  what is left after ``KILL_AFTER`` seconds; never ``ray stop``, which stops every Ray node of the host.
- ``describe`` reads the machine folders, so it survives a control-plane restart. A machine is
  running while the first process of its session (pid and start time) lives: a small bash that
  runs the user-data and, if it ends by itself, records its exit code. A machine whose user-data
  exited by itself shut down: *terminated*, with the exit code (a bootstrap that failed). One whose
  processes were killed without a terminate is *preempted* when it is spot (the capacity was taken
  back, as EC2 does with spot machines) and *terminated* ("the machine died") when on-demand;
  whatever is left of its session is killed, since a machine lives or dies whole.
- ``kill(machine_id)`` takes a machine away at once (SIGKILL to its session), as a spot
  interruption or a power loss would: tests use it.

Capacity: at most ``max_machines`` live machines (``CUMULO_LOCAL_VM_MAX``, default 8) and none in
the zones listed in ``CUMULO_LOCAL_VM_FULL_ZONES`` (comma-separated), each a CapacityError, so
failover and quota paths can be played on this host.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil

from cumulo.core import settings
from cumulo.core.errors import CapacityError, InvalidSpec
from cumulo.core.offerings import Machine, MachineState, Offering
from cumulo.providers.base import LAUNCH_TOKEN_TAG, check_launch_args, matches_tags

NAME = "local-vm"
FIRST_OCTET = 10
#: each node's dashboard agent port: AGENT_PORT_BASE + the last octet of its address
AGENT_PORT_BASE = 52600
#: seconds between a terminate's SIGTERM and the SIGKILL of what is left
KILL_AFTER = 10.0
#: a machine folder without a started process for this long counts as a launch that never started
START_GRACE = 120.0
#: terminated machines stay listed this long (like a cloud's terminated instances), then their folder goes
KEEP_ENDED = 3600.0
IDLE_SCRIPT = "#!/bin/bash\n# a local-vm machine launched without user-data: it exists and runs nothing\nexec sleep infinity\n"


def _ip_registry() -> Path:
    return Path(os.environ.get("CUMULO_LOCAL_VM_IPS") or Path(tempfile.gettempdir()) / "cumulo-local-vm" / "ips")


def machine_id(client_token: str, index: int = 0) -> str:
    return "lvm-" + hashlib.sha256(f"{client_token}/{index}".encode()).hexdigest()[:12]


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _leader(folder: Path) -> psutil.Process | None:
    """The machine's first process if it still lives (same pid AND start time; a zombie is dead)."""
    proc = _read(folder / "proc.json")
    if not proc:
        return None
    try:
        p = psutil.Process(proc["pid"])
        if abs(p.create_time() - proc["create_time"]) > 0.01 or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except psutil.Error:
        return None


def _session(folder: Path) -> list[psutil.Process]:
    """Every live process of the machine's session (and anything under them)."""
    proc = _read(folder / "proc.json")
    if not proc:
        return []
    sid, born = proc["pid"], proc["create_time"]
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["pid", "create_time", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE or p.info["create_time"] + 0.01 < born:
                continue
            if os.getsid(p.pid) == sid:
                found[p.pid] = p
                for c in p.children(recursive=True):
                    found[c.pid] = c
        except (OSError, psutil.Error):
            continue
    return list(found.values())


def _signal(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ips_in_use() -> set[str]:
    """Loopback addresses some process on this host runs a Ray node on (its command line names it)."""
    out = set()
    for p in psutil.process_iter(["cmdline"]):
        for a in p.info["cmdline"] or ():
            for flag in ("--node-ip-address=", "--node_ip_address="):
                if a.startswith(flag):
                    out.add(a[len(flag):])
    return out


class LocalVMProvider:
    name = NAME

    def __init__(self, root: Path | None = None, *, python: str | None = None, ip_registry: Path | None = None,
                 max_machines: int | None = None, full_zones: tuple[str, ...] | None = None) -> None:
        self.root = Path(root or settings.home() / "providers" / NAME)
        self.python = python or sys.executable
        self.ip_registry = ip_registry or _ip_registry()
        self.max_machines = max_machines if max_machines is not None else int(os.environ.get("CUMULO_LOCAL_VM_MAX", "8"))
        if full_zones is None:
            full_zones = tuple(z.strip() for z in os.environ.get("CUMULO_LOCAL_VM_FULL_ZONES", "").split(",") if z.strip())
        self.full_zones = full_zones
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen] = {}  # reaped by describe, so no zombie lingers

    # -- locks ---------------------------------------------------------------------------------
    @contextmanager
    def _locked(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- machines ------------------------------------------------------------------------------
    def _folder(self, mid: str) -> Path:
        return self.root / mid

    def _state(self, folder: Path, record: dict) -> tuple[str, str]:
        ended = _read(folder / "terminated.json")
        if ended is not None:
            left = _session(folder)
            if left:
                if time.time() - ended["at"] > KILL_AFTER:
                    _signal(left, signal.SIGKILL)
                return MachineState.TERMINATING, ended.get("reason", "terminating")
            self._release_ip(record, folder)
            return MachineState.TERMINATED, ended.get("reason", "terminated")
        if not (folder / "proc.json").exists():
            if time.time() - record["created"] > START_GRACE:
                return MachineState.TERMINATED, "the machine never started"
            return MachineState.PENDING, "starting"
        if _leader(folder) is not None:
            return MachineState.RUNNING, ""
        # gone without a terminate: a machine lives or dies whole
        _signal(_session(folder), signal.SIGKILL)
        self._release_ip(record, folder)
        code = (folder / "exit-code").read_text().strip() if (folder / "exit-code").exists() else None
        if code is not None:
            return MachineState.TERMINATED, (f"the machine shut down: its user-data exited with code {code} "
                                             f"(see {folder / 'console.log'})")
        if record["spot"]:
            return MachineState.PREEMPTED, "the spot machine was taken back (its processes were killed)"
        return MachineState.TERMINATED, "the machine died (its processes ended)"

    def _machine(self, folder: Path, record: dict) -> Machine:
        state, why = self._state(folder, record)
        return Machine(
            id=record["id"], provider=NAME, region=record["region"], zone=record["zone"],
            instance_type=record["instance_type"], state=state, spot=record["spot"], tags=dict(record["tags"]),
            launched_at=datetime.fromisoformat(record["launched_at"]), private_ip=record["ip"], state_reason=why,
        )

    def _start(self, folder: Path, record: dict) -> None:
        port = AGENT_PORT_BASE + int(record["ip"].rsplit(".", 1)[1])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "LANG": "C.UTF-8",
            "RAY_USAGE_STATS_ENABLED": "0", "CUMULO_MACHINE_ID": record["id"], "CUMULO_NODE_IP": record["ip"],
            "CUMULO_PYTHON": self.python,
            "CUMULO_RAY_START_ARGS": f"--dashboard-agent-listen-port={port} --object-store-memory=100000000",
        }
        with open(folder / "console.log", "ab") as out:
            # the leader runs the user-data and records its exit code when it ends by itself (a kill
            # of the whole session, as a preemption does, leaves no code)
            p = subprocess.Popen(["/bin/bash", "-c", 'bash "$1"; echo $? > "$2"', "machine", str(folder / "user-data.sh"),
                                  str(folder / "exit-code")], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._children[record["id"]] = p
        _write(folder / "proc.json", {"pid": p.pid, "create_time": psutil.Process(p.pid).create_time()})

    def _claim_ip(self, folder: Path) -> str:
        reg = self.ip_registry
        with self._locked(reg / ".lock"):
            busy = _ips_in_use()
            for octet in range(FIRST_OCTET, 255):
                ip = f"127.0.0.{octet}"
                if ip in busy:
                    continue
                claim = reg / ip
                owner = claim.read_text().strip() if claim.exists() else ""
                if owner and self._owner_alive(Path(owner)):
                    continue
                claim.write_text(str(folder))
                return ip
        raise CapacityError("local-vm: no free loopback address left (127.0.0.10-254)", scope="provider")

    @staticmethod
    def _owner_alive(folder: Path) -> bool:
        record = _read(folder / "machine.json")
        if record is None:
            return False
        if (folder / "proc.json").exists():
            return bool(_session(folder)) or _leader(folder) is not None
        return (folder / "terminated.json").exists() is False and time.time() - record["created"] < START_GRACE

    def _release_ip(self, record: dict, folder: Path) -> None:
        claim = self.ip_registry / record["ip"]
        try:
            if claim.read_text().strip() == str(folder):
                claim.unlink()
        except OSError:
            pass

    def _records(self) -> list[tuple[Path, dict]]:
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(self.root.iterdir()):
            record = _read(folder / "machine.json") if folder.is_dir() else None
            if record is not None:
                out.append((folder, record))
        return out

    def _live_count(self) -> int:
        return sum(1 for folder, r in self._records()
                   if self._state(folder, r)[0] in (MachineState.PENDING, MachineState.RUNNING))

    # -- Provider ------------------------------------------------------------------------------
    def launch(self, offering: Offering, count: int, *, spot: bool, tags: dict[str, str],
               user_data: str | None, client_token: str) -> list[Machine]:
        check_launch_args(self.name, offering, count, tags, client_token)
        if spot and offering.spot_price is None:
            raise InvalidSpec(f"{offering.instance_type} has no spot market here: launch it with spot=False",
                              errors=[{"field": "spot", "message": "no spot price for this offering"}])
        with self._lock, self._locked(self.root / ".lock"):
            ids = [machine_id(client_token, i) for i in range(count)]
            known = [(self._folder(i), _read(self._folder(i) / "machine.json")) for i in ids]
            if any(r is not None for _, r in known):  # launched before: the same machines, never more
                for folder, record in known:
                    if record is not None and not (folder / "proc.json").exists() \
                            and not (folder / "terminated.json").exists():
                        self._start(folder, record)  # a launch cut short before its process started
                return [self._machine(f, r) for f, r in known if r is not None]
            if offering.zone in self.full_zones:
                raise CapacityError(f"local-vm has no capacity left in zone {offering.zone} "
                                    "(CUMULO_LOCAL_VM_FULL_ZONES)", scope="zone")
            live = self._live_count()
            if live + count > self.max_machines:
                raise CapacityError(f"local-vm runs at most {self.max_machines} machines on this host and "
                                    f"{live} are up; {count} more were asked for", scope="provider")
            started: list[tuple[Path, dict]] = []
            try:
                for mid in ids:
                    folder = self._folder(mid)
                    folder.mkdir(parents=True)
                    record = {
                        "id": mid, "token": client_token, "spot": bool(spot), "tags": {**tags, LAUNCH_TOKEN_TAG: client_token},
                        "region": offering.region, "zone": offering.zone, "instance_type": offering.instance_type,
                        "cpus": offering.vcpus, "memory_gib": offering.memory_gib, "gpus": offering.accelerator_count,
                        "ip": self._claim_ip(folder), "created": time.time(),
                        "launched_at": datetime.now(UTC).isoformat(),
                    }
                    (folder / "user-data.sh").write_text(user_data or IDLE_SCRIPT)
                    _write(folder / "machine.json", record)
                    started.append((folder, record))
                    self._start(folder, record)
            except BaseException:
                for folder, record in started:  # all or nothing
                    _signal(_session(folder), signal.SIGKILL)
                    self._release_ip(record, folder)
                    shutil.rmtree(folder, ignore_errors=True)
                raise
            return [self._machine(f, r) for f, r in started]

    def terminate(self, machine_ids: list[str], *, region: str) -> None:
        for mid in machine_ids:
            folder = self._folder(mid)
            if _read(folder / "machine.json") is None:
                continue
            if not (folder / "terminated.json").exists():
                _write(folder / "terminated.json", {"reason": "terminated", "at": time.time()})
            signalled: set[int] = set()
            for _ in range(3):  # a process forked while the session was being read gets it too
                fresh = [p for p in _session(folder) if p.pid not in signalled]
                if not fresh:
                    break
                _signal(fresh, signal.SIGTERM)
                signalled.update(p.pid for p in fresh)
                time.sleep(0.02)
            self._reap(mid)

    def describe(self, *, region: str | None = None, tags: dict[str, str] | None = None) -> list[Machine]:
        out = []
        for mid in list(self._children):
            self._reap(mid)
        for folder, record in self._records():
            if region is not None and record["region"] != region:
                continue
            if not matches_tags(record["tags"], tags):
                continue
            m = self._machine(folder, record)
            if m.state == MachineState.TERMINATED and time.time() - record["created"] > KEEP_ENDED:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            out.append(m)
        return out

    def kill(self, machine_id: str) -> list[int]:
        """Take a machine away now (SIGKILL to its whole session), as a spot interruption would.
        Returns the pids killed."""
        folder = self._folder(machine_id)
        procs = _session(folder)
        _signal(procs, signal.SIGKILL)
        self._reap(machine_id)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.02)
        return sorted(p.pid for p in procs)

    def pids(self, machine_id: str) -> list[int]:
        """The live processes of a machine (tests clean up by these)."""
        return sorted(p.pid for p in _session(self._folder(machine_id)))

    def _reap(self, mid: str) -> None:
        p = self._children.get(mid)
        if p is not None and p.poll() is not None:
            self._children.pop(mid, None)


__all__ = ["LocalVMProvider", "machine_id"]
