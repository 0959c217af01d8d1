#!/usr/bin/env bash
# Start a Ray cluster of three nodes on this machine for the tests: a head on 127.0.0.2 and worker
# nodes on 127.0.0.3 and 127.0.0.4 (2 CPUs each). Prints the dashboard URL (the address
# `ray job submit --address` and `cumulo cluster add --ray` take) as its LAST line.
# Idempotent: a cluster of ours that is already up is reused, a missing worker node is restarted.
# Everything lives under $CUMULO_RAY_DIR (default /tmp/cumulo-ray); stop it with
#   bash .ci/ray.sh stop     (by the PIDs of our nodes' processes; never `ray stop`, which would
#                             kill every Ray instance of this user)
set -euo pipefail
root=${CUMULO_RAY_DIR:-/tmp/cumulo-ray}
head_ip=127.0.0.2
gcs_port=${CUMULO_RAY_GCS_PORT:-6390}
dash_port=${CUMULO_RAY_DASHBOARD_PORT:-8265}
url="http://$head_ip:$dash_port"
export RAY_USAGE_STATS_ENABLED=0
here=$(cd "$(dirname "$0")/.." && pwd)

ours() {  # pids of our cluster's processes: those naming our folder (every node's session files
          # live under the head's --temp-dir) and every process under them
  python - "$root" <<'PY'
import sys, psutil
root, me = sys.argv[1], psutil.Process()
found = set()
for p in psutil.process_iter(["pid", "cmdline"]):
    cmd = p.info["cmdline"] or []
    if p.pid != me.pid and any(root in a for a in cmd[1:]) and "ray" in " ".join(cmd):
        found.add(p.pid)
        try:
            found.update(c.pid for c in p.children(recursive=True))
        except psutil.Error:
            pass
print("\n".join(map(str, sorted(found))))
PY
}

if [ "${1-}" = stop ]; then
  pids=$(ours || true)
  [ -n "$pids" ] && kill -TERM $pids 2>/dev/null || true
  sleep 3
  pids=$(ours || true)
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  for _ in $(seq 50); do  # until they are gone (reaped), so a start right after finds the ports free
    python -c 'import psutil, sys; sys.exit(any(psutil.pid_exists(int(p)) and psutil.Process(int(p)).status() != "zombie" for p in sys.argv[1:]))' $pids && break
    sleep 0.2
  done
  exit 0
fi

python -c 'import ray' 2>/dev/null || python -m pip install -q -e "$here[ray]"
python -c 'import ray.dashboard' 2>/dev/null || python -m pip install -q 'ray[default]==2.60.0'
mkdir -p "$root"

alive_ips() {  # node IPs the head reports alive, one a line (nothing if the head is down)
  python - "$url" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/api/v0/nodes?limit=1000&detail=false", timeout=3) as r:
        body = json.load(r)
except Exception:
    sys.exit(0)
for n in body["data"]["result"]["result"]:
    if n.get("state") == "ALIVE":
        print(n["node_ip"])
PY
}

ips=$(alive_ips)
if ! grep -qx "$head_ip" <<<"$ips"; then
  ray start --head --node-ip-address="$head_ip" --port="$gcs_port" \
    --dashboard-host="$head_ip" --dashboard-port="$dash_port" --include-dashboard=true \
    --dashboard-agent-listen-port=52401 --num-cpus=2 --object-store-memory=100000000 \
    --temp-dir="$root/tmp" --disable-usage-stats >"$root/head.out" 2>&1 \
    || { cat "$root/head.out" >&2; exit 1; }
fi
agent=52402
for ip in 127.0.0.3 127.0.0.4; do
  if ! grep -qx "$ip" <<<"$ips"; then
    ray start --address="$head_ip:$gcs_port" --node-ip-address="$ip" \
      --dashboard-agent-listen-port=$agent --num-cpus=2 --object-store-memory=100000000 \
      --disable-usage-stats >"$root/worker-$ip.out" 2>&1 \
      || { cat "$root/worker-$ip.out" >&2; exit 1; }
  fi
  agent=$((agent + 1))
done

for _ in $(seq 120); do
  [ "$(alive_ips | grep -c -E '^127\.0\.0\.[234]$')" = 3 ] && break
  sleep 1
done
[ "$(alive_ips | grep -c -E '^127\.0\.0\.[234]$')" = 3 ] || { echo "the Ray cluster did not come up: see $root/*.out" >&2; exit 1; }
echo "$url"
