#!/usr/bin/env bash
# Runs every benchmark of this module COUNT times (default 6; rows interleaved,
# their order rotated on each run), then writes:
#   results.txt  the raw output of go test -bench
#   stat.txt     benchstat's comparison of each library with bare
#   results.md   the markdown table for the README (cmd/report)
set -euo pipefail
cd "$(dirname "$0")"
count=${COUNT:-6}
go test -run '^$' -bench . -count "$count" -timeout 60m | tee results.txt
go tool benchstat -col /lib results.txt > stat.txt
{
  echo "Measured on $(date -u +%Y-%m-%d) with $(go version | cut -d' ' -f3-), $(nproc) cores, by bench/run.sh (COUNT=$count)."
  echo
  go run ./cmd/report < results.txt
} > results.md
echo "wrote results.txt, stat.txt and results.md"
