"""Supervisor of one workload's processes. Standard library only; run by path, not imported.

    python supervisor.py RUN_DIR

Files in RUN_DIR (the control plane reads them, so they outlive both processes):
  launch.json      written by the control plane: command, workdir, env, per-worker env, grace
  supervisor.json  created exclusively: {"pid", "start"} of this process, or {"abandoned": true}
                   if the control plane gave up on this launch first (then nothing starts)
  workers.json     [{"rank", "pid", "start"}] once every worker is started
  rank-N.log       stdout and stderr of worker N
  exit.json        {"exit_codes": [...], "exit_code", "finished": epoch} written atomically when all
                   have ended; exit_code is the first failing worker's (others were stopped for it)

Each worker runs in its own process group. If one fails, the others are stopped (a job's workers
live and die together). SIGTERM stops every worker: SIGTERM to its group, SIGKILL after the grace.
"""

import json
import os
import signal
import subprocess
import sys
import time


def start_time(pid):
    """Process start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def signal_groups(pids, sig):
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def main(run_dir):
    claim = os.path.join(run_dir, "supervisor.json")
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return 0  # the control plane abandoned this launch before we came up
    me = os.getpid()
    os.write(fd, json.dumps({"pid": me, "start": start_time(me)}).encode())
    os.fsync(fd)
    os.close(fd)

    with open(os.path.join(run_dir, "launch.json")) as f:
        spec = json.load(f)
    command = spec["command"]
    grace = float(spec.get("stop_grace", 10))

    running = {}  # pid -> rank
    codes = {}
    stopping = {"at": None}
    first_failure = {"code": None}

    def stop_all(_sig=None, _frame=None):
        if stopping["at"] is None:
            stopping["at"] = time.monotonic()
            signal_groups(list(running), signal.SIGTERM)
            signal.alarm(max(1, int(grace + 0.999)))

    def kill_all(_sig=None, _frame=None):
        signal_groups(list(running), signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGHUP, stop_all)
    signal.signal(signal.SIGALRM, kill_all)

    workers = []
    for rank, extra in enumerate(spec["worker_env"]):
        env = dict(spec["env"])
        env.update(extra)
        log = open(os.path.join(run_dir, f"rank-{rank}.log"), "ab", buffering=0)
        try:
            proc = subprocess.Popen(
                command,
                shell=isinstance(command, str),
                cwd=spec["workdir"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        except OSError as exc:
            log.write(f"cumulo: cannot start {command!r}: {exc}\n".encode())
            codes[rank] = first_failure["code"] = 127
            log.close()
            stop_all()
            break
        log.close()
        running[proc.pid] = rank
        workers.append({"rank": rank, "pid": proc.pid, "start": start_time(proc.pid)})
    write_json(os.path.join(run_dir, "workers.json"), workers)

    while running:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        rank = running.pop(pid, None)
        if rank is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        codes[rank] = 128 - code if code < 0 else code
        signal_groups([pid], signal.SIGKILL)  # leftovers of that worker's group
        if codes[rank] != 0:
            if stopping["at"] is None:
                first_failure["code"] = codes[rank]
            stop_all()
    signal.alarm(0)

    n = len(spec["worker_env"])
    write_json(
        os.path.join(run_dir, "exit.json"),
        {
            "exit_codes": [codes.get(r) for r in range(n)],
            # the first worker to fail decides, not the ones stopped because of it
            "exit_code": first_failure["code"] if first_failure["code"] is not None else max(codes.values(), default=0),
            "finished": time.time(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
