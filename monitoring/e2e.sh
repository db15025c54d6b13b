#!/usr/bin/env bash
# End to end: a real Prometheus scrapes `retryhttp demo`, which drives retries
# through a Transport against a flaky upstream; then every dashboard query,
# every variable and every alert expression
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

(cd .. && go build -o "$work/retryhttp" ./cmd/retryhttp)
go build -o "$work/promcheck" ./cmd/promcheck

# Two instances of the demo in an outage: 62% of attempts fail (503, 429 with
# Retry-After, resets). The first has the default retry budget, which
# refuses retries (the budget alert); the second has none and sends about 2
# attempts per request (the retry storm alert). Both give up on about a
# quarter of their requests (the give-up alert).
demo_args=(-duration 3m -clients 4 -progress 1m -error-rate 0.5 -throttle-rate 0.1 -retry-after 0s
  -reset-rate 0.02 -latency 1ms -base-delay 5ms -max-delay 50ms)
metrics_port=$(free_port)
"$work/retryhttp" demo -metrics-addr "127.0.0.1:$metrics_port" "${demo_args[@]}" >"$work/demo.log" 2>&1 &
pids+=($!)
storm_port=$(free_port)
"$work/retryhttp" demo -metrics-addr "127.0.0.1:$storm_port" -budget=false "${demo_args[@]}" >"$work/storm.log" 2>&1 &
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
      - targets: ["127.0.0.1:$metrics_port", "127.0.0.1:$storm_port"]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
echo "e2e: prometheus (pid ${pids[2]}) on 127.0.0.1:$prom_port scraping retryhttp demo on 127.0.0.1:$metrics_port (pid ${pids[0]}) and 127.0.0.1:$storm_port without a budget (pid ${pids[1]})"

if ! "$work/promcheck" -prometheus "http://127.0.0.1:$prom_port" -job retryhttp-e2e \
  -dashboard grafana/retryhttp.json -rules prometheus/alerts.yml -wait 90s; then
  echo "e2e: prometheus log:" >&2
  cat "$work/prometheus.log" >&2
  echo "e2e: demo logs:" >&2
  cat "$work/demo.log" "$work/storm.log" >&2
  exit 1
fi
