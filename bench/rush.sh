#!/usr/bin/env bash
# The 9am rush on a local cluster: `ringstore dev` with 5 nodes (seeded with the
# catalogue and 5,000 students), then `ringstore bench rush` twice on fresh data —
# once undisturbed, once with node n3 stopped when half the students are done —
# with CONCURRENCY students at a time (closed loop: the cluster kept saturated).
# With RATE, twice more with students arriving RATE per second (open loop: the
# latencies of a cluster offered that load).
#
#   bench/rush.sh [students] [concurrency] [rate]
#
# Uses RINGSTORE_BIN if set, else builds the release binary. Prints the reports and
# writes them to bench/results/rush-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
students="${1:-5000}"
concurrency="${2:-64}"
rate="${3:-}"
source bench/lib.sh
base=9000
urls="http://127.0.0.1:$((base + 80)),http://127.0.0.1:$((base + 81))"

rush() { # name extra-args…
  local name=$1; shift
  rm -rf "$work/dev"
  "$RINGSTORE_BIN" dev --nodes 5 --data "$work/dev" --base-port "$base" >"$work/dev.log" 2>&1 &
  local dev=$!
  pids+=("$dev")
  for _ in $(seq 300); do grep -q "Press Ctrl-C" "$work/dev.log" && break; sleep 0.5; done
  grep -q "Press Ctrl-C" "$work/dev.log" || { cat "$work/dev.log" >&2; exit 1; }
  echo "### $name"
  echo
  echo '```'
  "$RINGSTORE_BIN" bench rush --url "$urls" --students "$students" "$@" || true
  echo '```'
  echo
  kill -INT "$dev"; wait "$dev" || true
}

date_utc=$(date -u +%Y-%m-%d)
out="bench/results/rush-$date_utc.md"
{
  echo "# The 9am rush, $date_utc"
  echo
  echo "Command: \`bench/rush.sh $students $concurrency${rate:+ $rate}\` — \`ringstore dev --nodes 5\` (2 ring servers, 5 nodes, durability always,"
  echo "seeded with 40 subjects and 5,000 students), then \`ringstore bench rush --students $students --concurrency $concurrency\`"
  echo "${rate:+and \`--arrival-rate $rate\` }through both ring servers; all on one machine: $(machine)."
  echo
  rush "undisturbed, $concurrency at a time" --concurrency "$concurrency"
  rush "n3 stopped (SIGKILL) midway, $concurrency at a time" --concurrency "$concurrency" --kill-midway n3
  if [[ -n "$rate" ]]; then
    rush "undisturbed, arriving $rate/s" --arrival-rate "$rate"
    rush "n3 stopped (SIGKILL) midway, arriving $rate/s" --arrival-rate "$rate" --kill-midway n3
  fi
} | tee "$out"
