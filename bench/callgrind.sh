#!/usr/bin/env bash
# Instructions per request on the in-memory GET, which do not depend on a
# noisy machine: callgrind counts the instructions of runs of N and 2N
# requests (GOGC=off), and the difference divided by N is one request's.
# That total moves by about 100 instructions between runs of one binary (the
# runtime's page allocator and profiling samples), so for retryhttp's rows
# the script also prints retryhttp's own cost, which does not move:
# instructions inside Transport.RoundTrip minus those inside the base's
# RoundTrip it calls, per request.
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
  GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$work/out.$2" "$work/bench.test" \
    -test.run '^$' -test.bench "^BenchmarkInMemoryGET\$/^lib=$re\$" -test.benchtime "$2x" >/dev/null 2>"$work/log"
  sed -n 's/^summary: //p' "$work/out.$2"
}
inside() { # requests function-pattern: inclusive instructions of the function
  callgrind_annotate --inclusive=yes "$work/out.$1" 2>/dev/null | grep -v '=>' | grep -E "$2" | head -1 | awk '{gsub(",", "", $1); print $1}'
}
own() { # requests: retryhttp's own instructions in that run
  echo $(($(inside "$1" 'retryhttp\.\(\*Transport\)\.RoundTrip \[') - $(inside "$1" '\?\?\?:.*bench\.\(\*handlerRT\)\.RoundTrip \[')))
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
    printf '%-20s %8d instructions per request (%+.1f%% of %s)' "$lib" "$per" "$(echo "($per - $base) * 100 / $base" | bc -l)" "${libs[0]}"
    if [[ $lib == retryhttp* ]]; then
      mine=$((($(own $((2 * n))) - $(own "$n")) / n))
      printf '; its own: %d (%+.1f%%)' "$mine" "$(echo "$mine * 100 / $base" | bc -l)"
    fi
    printf '\n'
  fi
done
