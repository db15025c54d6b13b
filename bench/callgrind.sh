#!/usr/bin/env bash
# Instructions per request on the in-memory GET, which do not depend on a
# noisy machine: callgrind counts the instructions of runs of N and 2N
# requests (GOGC=off), and the difference divided by N is one request's.
#   ./callgrind.sh [LIB...]     default: bare retryhttp retryhttp+metrics
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")"
n=${N:-10000}
libs=("$@")
((${#libs[@]})) || libs=(bare retryhttp retryhttp+metrics)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go test -c -o "$work/bench.test" . # valgrind and cgo's signal masks do not mix
count() { # lib requests
  local re
  re=$(printf '%s' "$1" | sed 's/[+.]/\\&/g')
  # One thread, no preemption signals: callgrind follows Go badly otherwise.
  GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$work/out" "$work/bench.test" \
    -test.run '^$' -test.bench "^BenchmarkInMemoryGET\$/^lib=$re\$" -test.benchtime "$2x" >/dev/null 2>"$work/log"
  sed -n 's/^summary: //p' "$work/out"
}
base=""
for lib in "${libs[@]}"; do
  a=$(count "$lib" "$n")
  b=$(count "$lib" $((2 * n)))
  per=$(((b - a) / n))
  if [[ -z $base ]]; then
    base=$per
    printf '%-20s %8d instructions per request\n' "$lib" "$per"
  else
    printf '%-20s %8d instructions per request (%+.1f%% of %s)\n' "$lib" "$per" "$(echo "($per - $base) * 100 / $base" | bc -l)" "${libs[0]}"
  fi
done
