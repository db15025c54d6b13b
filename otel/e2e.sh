#!/usr/bin/env bash
# End to end test of the otel module: the spans and metrics of a retried
# request, exported over OTLP to a real OpenTelemetry Collector on 127.0.0.1
# and read back from its file exporter (otel/e2e).
#
# The Collector (otel/collector: the OTLP receiver and the file exporter, a
# 49 MB binary) is built once and cached in $RETRYHTTP_CACHE (default
# ~/.cache/retryhttp, beside Go's build cache), under a key of its sources:
# on a cold machine the first run downloads and builds it in about 2 to 3
# minutes; later runs start at once.
#
#   otel/e2e.sh                                           run the test
#   RETRYHTTP_TRACE_SVG=$PWD/docs/otel-trace.svg otel/e2e.sh  also redraw the README's picture
set -euo pipefail
cd "$(dirname "$0")"

cache=${RETRYHTTP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/retryhttp}
key=$(cat collector/go.mod collector/go.sum collector/main.go | sha256sum | cut -c1-16)
bin="$cache/otelcol-$(go env GOOS)-$(go env GOARCH)-$key"
if [[ ! -x "$bin" ]]; then
  echo "otel/e2e.sh: building the OpenTelemetry Collector into $bin (the first time only: about 2 to 3 minutes)"
  mkdir -p "$cache"
  start=$(date +%s)
  (cd collector && go build -trimpath -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
  echo "otel/e2e.sh: built in $(( $(date +%s) - start )) s"
fi

cd e2e
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
RETRYHTTP_OTELCOL="$bin" go test -race -count=1 -v -run 'TestTraceAndMetricsThroughACollector|TestWriteSVG' . >"$out" 2>&1 || status=$?
cat "$out"
if [[ $status -ne 0 ]] || ! grep -q -- '--- PASS: TestTraceAndMetricsThroughACollector' "$out"; then
  echo "otel/e2e.sh: the end-to-end test failed or did not run" >&2
  exit 1
fi
