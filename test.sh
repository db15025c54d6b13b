#!/usr/bin/env bash
# Runs every test of the project: each Go module with the race detector (the
# chaos suite runs about 15 s; SOAK=10m in its folder runs it longer), the
# alert rules' unit tests (promtool), the end-to-end test of the dashboard
# and alerts against a real Prometheus, and the end-to-end test of the otel
# module against a real OpenTelemetry Collector (built once and cached: see
# otel/e2e.sh). Installs Debian's prometheus package
# (for promtool and the end-to-end test) when it is missing.
set -euo pipefail
cd "$(dirname "$0")"

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

echo "--- promtool test rules"
promtool check rules monitoring/prometheus/alerts.yml
promtool test rules monitoring/prometheus/alerts_test.yml

echo "--- end to end: dashboard and alerts against a real Prometheus"
monitoring/e2e.sh

echo "--- end to end: traces and metrics through a real OpenTelemetry Collector"
otel/e2e.sh
