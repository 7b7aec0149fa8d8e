#!/usr/bin/env bash
# Single-node HTTP benchmark: a node (durability always) beside the trivial
# Hummingbird server of `ringstore bench http-baseline`, in the same run, with wrk.
#
#   bench/single-node.sh [seconds] [connections]
#
# Uses RINGSTORE_BIN if set, else builds the release binary. Prints a markdown
# table and writes it to bench/results/single-node-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-32}"
keys=10000
source bench/lib.sh

wait_for() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "$1 did not come up" >&2; exit 1; }

"$RINGSTORE_BIN" node --data "$work/node" --http 127.0.0.1:18181 --durability always --log-level warning >"$work/node.log" 2>&1 &
pids+=($!)
"$RINGSTORE_BIN" bench http-baseline --http 127.0.0.1:18182 >"$work/baseline.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:18181/healthz
wait_for http://127.0.0.1:18182/v1/kv/default/x

python3 - "$keys" <<'PY'
import http.client, sys
connection = http.client.HTTPConnection("127.0.0.1", 18181)
for i in range(int(sys.argv[1])):
    connection.request("PUT", f"/v1/kv/default/key{i}", body=b"v" * 100, headers={"Content-Type": "application/octet-stream"})
    response = connection.getresponse(); response.read()
    assert response.status == 204, response.status
PY

run() { # name url script
  local line
  line=$(KEYS=$keys wrk -t2 -c"$connections" -d"${seconds}s" -s "bench/wrk/$3" "$2" | grep '^RESULT')
  echo "$1 $line"
}

results=()
results+=("$(run 'baseline GET' http://127.0.0.1:18182 get.lua)")
results+=("$(run 'node GET' http://127.0.0.1:18181 get.lua)")
results+=("$(run 'baseline PUT' http://127.0.0.1:18182 put.lua)")
results+=("$(run 'node PUT' http://127.0.0.1:18181 put.lua)")

base_get=$(field "${results[0]}" rps); node_get=$(field "${results[1]}" rps)
base_put=$(field "${results[2]}" rps); node_put=$(field "${results[3]}" rps)
date_utc=$(date -u +%Y-%m-%d)
out="bench/results/single-node-$date_utc.md"
{
  echo "# Single node over HTTP, $date_utc"
  echo
  echo "Command: \`bench/single-node.sh $seconds $connections\` — wrk -t2 -c$connections -d${seconds}s, 100-byte values,"
  echo "$keys preloaded keys, node with \`--durability always\`. Machine: $(machine)."
  echo
  results_table
  echo
  echo "GET: node / trivial route = $(python3 -c "print(f'{$node_get/$base_get:.0%}')")"
  echo "PUT: node / trivial route = $(python3 -c "print(f'{$node_put/$base_put:.0%}')")"
} | tee "$out"
