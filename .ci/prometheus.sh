#!/usr/bin/env bash
# Start Prometheus (Debian's package) on 127.0.0.1 with the shipped scrape config
# (deploy/prometheus/prometheus.yml), pointed at the cumulo the tests start on a fixed port and
# scraping every 2 s. Idempotent: a running one gets the config again (reload).
# Prints what the tests need on its last line: "PROMETHEUS_URL CUMULO_TARGET TOKEN_FILE" (the tests
# start cumulo on CUMULO_TARGET and write a `--role metrics` token into TOKEN_FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${CUMULO_PROMETHEUS_PORT:-9590}"
TARGET="${CUMULO_PROMETHEUS_TARGET:-127.0.0.1:8297}"
STATE="${CUMULO_PROMETHEUS_DIR:-/tmp/cumulo-prometheus}"
if ! command -v prometheus >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
mkdir -p "$STATE/data"
[ -f "$STATE/token" ] || install -m 0600 /dev/null "$STATE/token"
sed -e "s#127.0.0.1:8200#${TARGET}#" \
    -e "s#/etc/prometheus/cumulo-token#${STATE}/token#" \
    -e "s#scrape_interval: 10s#scrape_interval: 2s#" \
    -e "s#evaluation_interval: 10s#evaluation_interval: 2s#" \
    -e "s#scrape_timeout: 5s#scrape_timeout: 2s#" \
    deploy/prometheus/prometheus.yml > "$STATE/prometheus.yml"
promtool check config "$STATE/prometheus.yml" >/dev/null
URL="http://127.0.0.1:${PORT}"
if curl -fsS "$URL/-/ready" >/dev/null 2>&1; then
  curl -fsS -X POST "$URL/-/reload" >/dev/null
else
  nohup prometheus --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/data" \
    --web.listen-address="127.0.0.1:${PORT}" --web.enable-lifecycle >"$STATE/prometheus.log" 2>&1 &
  echo $! >"$STATE/pid"
  for _ in $(seq 100); do curl -fsS "$URL/-/ready" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "$URL/-/ready" >/dev/null || { tail -n 20 "$STATE/prometheus.log" >&2; exit 1; }
fi
echo "$URL $TARGET $STATE/token"
