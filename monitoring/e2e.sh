#!/usr/bin/env bash
# End to end: a real Prometheus scrapes `retryhttp demo`, which drives retries
# through a Transport against a flaky upstream, and cmd/adaptive-load, whose
# Transport paces its requests to an upstream of fixed capacity (the adaptive
# rate); then every dashboard query,
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

# metrics_addr waits for a demo to print the address it serves metrics on
# (it listens on port 0, so the kernel picks a free one) and prints it.
metrics_addr() {
  local log=$1 pid=$2 addr
  for _ in $(seq 100); do
    addr=$(sed -n 's|^metrics: http://\(.*\)/metrics$|\1|p' "$log")
    if [ -n "$addr" ]; then
      echo "$addr"
      return
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "e2e: retryhttp demo did not start:" >&2
  cat "$log" >&2
  return 1
}

(cd .. && go build -o "$work/retryhttp" ./cmd/retryhttp)
go build -o "$work/promcheck" ./cmd/promcheck
go build -o "$work/adaptive-load" ./cmd/adaptive-load

# Two instances of the demo in an outage: 62% of attempts fail (503, 429 with
# Retry-After, resets). The first has the default retry budget, which
# refuses retries (the budget alert); the second has none and sends about 2
# attempts per request (the retry storm alert). Both give up on about a
# quarter of their requests (the give-up alert). 5% of answers take 100 ms,
# which both hedge after 10 ms (the hedging panel). Every demo runs with
# -outage=false: the failures its flags describe, for the whole run, rather
# than the default story of steady failures, an outage and recovery.
demo_args=(-duration 3m -outage=false -clients 4 -progress 1m -error-rate 0.5 -throttle-rate 0.1 -retry-after 0s
  -reset-rate 0.02 -latency 1ms -base-delay 5ms -max-delay 50ms -slow-rate 0.05 -slow-latency 100ms -hedge 10ms)
"$work/retryhttp" demo -metrics-addr 127.0.0.1:0 "${demo_args[@]}" >"$work/demo.log" 2>&1 &
pids+=($!)
"$work/retryhttp" demo -metrics-addr 127.0.0.1:0 -budget=false "${demo_args[@]}" >"$work/storm.log" 2>&1 &
pids+=($!)
# A third against an upstream that keeps a quota of 20 requests per 2 s and
# announces it: the Transport holds its requests until the quota refills
# (held requests), and those that may not wait that long (-max-retry-after
# 1s) are not sent at all (outcome throttled).
"$work/retryhttp" demo -metrics-addr 127.0.0.1:0 -duration 3m -outage=false -clients 4 -progress 1m -error-rate 0 \
  -throttle-rate 0 -reset-rate 0 -latency 1ms -quota 20 -quota-window 2s -max-retry-after 1s >"$work/quota.log" 2>&1 &
pids+=($!)
# A fourth against an upstream that answers 40 requests a second and a bare
# 429 (no Retry-After, no quota) to the rest, offered three times that: the
# adaptive rate wakes and paces the requests (paced requests, pace waits).
"$work/adaptive-load" -metrics-addr 127.0.0.1:0 -duration 3m -capacity 40 -offer 120 >"$work/adaptive.log" 2>&1 &
pids+=($!)
demo_addr=$(metrics_addr "$work/demo.log" "${pids[0]}")
storm_addr=$(metrics_addr "$work/storm.log" "${pids[1]}")
quota_addr=$(metrics_addr "$work/quota.log" "${pids[2]}")
adaptive_addr=$(metrics_addr "$work/adaptive.log" "${pids[3]}")

cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/prometheus/alerts.yml
scrape_configs:
  - job_name: retryhttp-e2e
    static_configs:
      - targets: ["$demo_addr", "$storm_addr", "$quota_addr", "$adaptive_addr"]
YAML

# Prometheus needs a port of its own choosing: try ports outside the
# kernel's ephemeral range (where client sockets in TIME_WAIT sit) until one
# binds, and Prometheus answers on it.
prom_port=""
for port in $(shuf -i 10000-30000 -n 10); do
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data-$port" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$work/prometheus.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      sleep 0.5 # someone answers: make sure it is this Prometheus, still running
      if kill -0 "$pid" 2>/dev/null; then prom_port=$port; fi
      break
    fi
    sleep 0.1
  done
  if [ -n "$prom_port" ]; then
    pids+=("$pid")
    break
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
if [ -z "$prom_port" ]; then
  echo "e2e: prometheus did not start:" >&2
  cat "$work/prometheus.log" >&2
  exit 1
fi
for i in 0 1 2 3; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "e2e: a retryhttp demo or adaptive-load exited early:" >&2
    cat "$work/demo.log" "$work/storm.log" "$work/quota.log" "$work/adaptive.log" >&2
    exit 1
  fi
done
echo "e2e: prometheus (pid ${pids[4]}) on 127.0.0.1:$prom_port scraping retryhttp demo on $demo_addr (pid ${pids[0]}), $storm_addr without a budget (pid ${pids[1]}) and $quota_addr against a quota (pid ${pids[2]}), and adaptive-load on $adaptive_addr (pid ${pids[3]})"

if ! "$work/promcheck" -prometheus "http://127.0.0.1:$prom_port" -job retryhttp-e2e \
  -dashboard grafana/retryhttp.json -rules prometheus/alerts.yml -wait 90s; then
  echo "e2e: prometheus log:" >&2
  cat "$work/prometheus.log" >&2
  echo "e2e: demo and adaptive-load logs:" >&2
  cat "$work/demo.log" "$work/storm.log" "$work/quota.log" "$work/adaptive.log" >&2
  exit 1
fi
