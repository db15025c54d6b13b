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
  echo "test.sh: installing prometheus (Debian package) for promtool and the end-to-end test"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
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
