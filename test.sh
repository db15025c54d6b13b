#!/usr/bin/env bash
# Runs every test of the project: each Go module with the race detector (the
# chaos suite runs about 15 s; SOAK=10m in its folder runs it longer), the
# alert rules' unit tests (promtool), the end-to-end test of the dashboard
# and alerts against a real Prometheus, and the end-to-end test of the otel
# module against a real OpenTelemetry Collector (built once and cached: see
# otel/e2e.sh). Installs Debian's prometheus package
# (for promtool and the end-to-end test) when it is missing.
#
#   ./test.sh                  everything
#   ./test.sh -busy            everything, with one busy loop per core running
#                              all along (as on a shared CI runner during a
#                              build): a test that only passes on an idle
#                              machine fails here first
#   ./test.sh [-busy] MODULE...  only go test in those modules (say: . chaos)
set -euo pipefail
cd "$(dirname "$0")"

busy=0
if [[ ${1:-} == -busy ]]; then
  busy=$(nproc)
  shift
fi
modules=("$@")

# The busy loops are the script's own children, killed by PID when it exits
# however it exits (an error, Ctrl-C, SIGTERM); each also stops by itself as
# soon as the script is gone, should it be killed with SIGKILL.
busy_pids=()
stop_busy() {
  if ((${#busy_pids[@]})); then
    kill "${busy_pids[@]}" 2>/dev/null || true
    wait "${busy_pids[@]}" 2>/dev/null || true
    busy_pids=()
  fi
}
trap stop_busy EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
if ((busy > 0)); then
  echo "test.sh: $busy busy loops (one per core) run until the end"
  parent=$$
  for ((i = 0; i < busy; i++)); do
    (while kill -0 "$parent" 2>/dev/null; do :; done) &
    busy_pids+=($!)
  done
fi

if ((${#modules[@]})); then
  for module in "${modules[@]}"; do
    echo "--- go test -race ($module)"
    (cd "$module" && go test -race -count=1 -parallel 16 ./...)
  done
  exit 0
fi

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  how="apt-get install -y --no-install-recommends prometheus"
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "test.sh: prometheus and promtool are missing; install Debian's prometheus package ($how, as root), or run ./test.sh as root on Debian to let it install them" >&2
    exit 1
  fi
  echo "test.sh: installing prometheus (Debian package) for promtool and the end-to-end test"
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
    echo "test.sh: could not install Debian's prometheus package (apt-get's error is above); install it ($how) and run ./test.sh again" >&2
    exit 1
  fi
fi

for module in . monitoring bench chaos otel otel/e2e; do
  echo "--- go test -race ($module)"
  (cd "$module" && go test -race -count=1 -parallel 16 ./...)
done

# The race detector changes what allocates (sync.Pool drops a quarter of
# what is put back), so the tests that count allocations skip under it:
# they run here without it.
echo "--- go test: allocation counts, without -race"
go test -count=1 -run 'Alloc' . ./blackbox/...
(cd otel && go test -count=1 -run 'Alloc' .)

echo "--- promtool test rules"
promtool check rules monitoring/prometheus/alerts.yml
promtool test rules monitoring/prometheus/alerts_test.yml

echo "--- end to end: dashboard and alerts against a real Prometheus"
monitoring/e2e.sh

echo "--- end to end: traces and metrics through a real OpenTelemetry Collector"
otel/e2e.sh
