#!/usr/bin/env bash
# End to end: a real Prometheus scrapes a process that drives retries through
# a retryhttp Transport; then every dashboard query and every alert expression
# is evaluated through Prometheus's HTTP API, and any that errors or returns no
# data fails the run. Prometheus is installed from Debian if missing, runs on
# 127.0.0.1 only, and is stopped by its PID; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v prometheus >/dev/null; then
  echo "e2e: installing prometheus (Debian package)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# free_port prints a loopback port that nothing listens on.
free_port() {
  local port
  for port in $(shuf -i 20000-60000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "e2e: no free port" >&2
  return 1
}

go build -o "$work/driver" ./cmd/driver
go build -o "$work/promcheck" ./cmd/promcheck

metrics_port=$(free_port)
"$work/driver" -listen "127.0.0.1:$metrics_port" -duration 3m &
pids+=($!)

prom_port=$(free_port)
cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/prometheus/alerts.yml
scrape_configs:
  - job_name: retryhttp-e2e
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
echo "e2e: prometheus (pid ${pids[1]}) on 127.0.0.1:$prom_port scraping the driver (pid ${pids[0]}) on 127.0.0.1:$metrics_port"

if ! "$work/promcheck" -prometheus "http://127.0.0.1:$prom_port" -job retryhttp-e2e \
  -dashboard grafana/retryhttp.json -rules prometheus/alerts.yml -wait 90s; then
  echo "e2e: prometheus log:" >&2
  cat "$work/prometheus.log" >&2
  exit 1
fi
