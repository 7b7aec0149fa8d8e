#!/usr/bin/env bash
# Through a ring server or straight to a coordinator: 2 ring servers and 3 nodes
# (N=3, R=W=2, durability always, 100-byte values, 10,000 keys). The same cluster is
# measured four ways:
#   - `ringstore bench run --mode ring`: the Swift client through the two ring
#     servers over the node protocol (each passes a request on to a coordinator);
#   - `ringstore bench run --mode direct`: the partition-aware Swift client straight
#     to a coordinator over the node protocol;
#   - wrk over HTTP against the two ring servers (each forwards to a coordinator);
#   - wrk over HTTP against the three nodes (each coordinates).
#
#   bench/ring-vs-direct.sh [seconds] [connections]
#
# Uses RINGSTORE_BIN if set, else builds the release binary. Writes
# bench/results/ring-vs-direct-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-32}"
keys=10000
source bench/lib.sh

rs_http=(18680 18681); rs_rpc=(18690 18691)
join="127.0.0.1:${rs_rpc[0]},127.0.0.1:${rs_rpc[1]}"
for i in 0 1; do
  other=$((1 - i))
  "$RINGSTORE_BIN" ring --id "rs$((i + 1))" --role "$([[ $i == 0 ]] && echo primary || echo secondary)" --data "$work/rs$((i + 1))" \
    --http "127.0.0.1:${rs_http[$i]}" --rpc "127.0.0.1:${rs_rpc[$i]}" --peer "rs$((other + 1))=127.0.0.1:${rs_rpc[$other]}" \
    --initial-nodes 3 --log-level warning >"$work/rs$((i + 1)).log" 2>&1 &
  pids+=($!)
done
node_http=(18701 18702 18703)
for i in 1 2 3; do
  "$RINGSTORE_BIN" node --id "n$i" --data "$work/n$i" --http "127.0.0.1:${node_http[$((i - 1))]}" --rpc "127.0.0.1:$((18710 + i))" \
    --join "$join" --durability always --log-level warning >"$work/n$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:${rs_http[0]}/v1/cluster" | grep -q '"ring_epoch":[1-9]' && break
  sleep 0.1
done
sleep 2

python3 - "$keys" "${rs_http[0]}" <<'PY'
import http.client, sys
keys, port = int(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", port)
for i in range(keys):
    connection.request("PUT", f"/v1/kv/default/key{i}", body=b"v" * 100)
    response = connection.getresponse(); response.read()
    assert response.status == 204, response.status
PY

export KEYS=$keys
client_run() { # name mode workload -> RESULT line from the Swift client
  bench_run "$1" --url "http://127.0.0.1:${rs_http[0]},http://127.0.0.1:${rs_http[1]}" --mode "$2" \
    --workload "$3" --concurrency "$connections" --duration "$seconds" --value-size 100 --keys "$keys"
}

results=()
results+=("$(client_run 'GET through the ring servers (Swift client, node protocol)' ring c)")
results+=("$(client_run 'GET direct (Swift client, node protocol)' direct c)")
results+=("$(wrk_spread 'GET through the ring servers (wrk, HTTP)' get.lua "${rs_http[@]}")")
results+=("$(wrk_spread 'GET to the nodes (wrk, HTTP)' get.lua "${node_http[@]}")")
results+=("$(client_run 'PUT through the ring servers (Swift client, node protocol)' ring w)")
results+=("$(client_run 'PUT direct (Swift client, node protocol)' direct w)")
results+=("$(wrk_spread 'PUT through the ring servers (wrk, HTTP)' put.lua "${rs_http[@]}")")
results+=("$(wrk_spread 'PUT to the nodes (wrk, HTTP)' put.lua "${node_http[@]}")")

out="bench/results/ring-vs-direct-$(date -u +%F).md"
{
  echo "# Through a ring server or straight to a coordinator, $(date -u +%F)"
  echo
  echo "Command: \`bench/ring-vs-direct.sh $seconds $connections\` — 2 ring servers and 3 nodes on one machine ($(machine)),"
  echo "N=3 R=2 W=2, \`--durability always\`, 100-byte values, $keys preloaded keys, $connections connections or tasks in all, ${seconds} s each."
  echo
  results_table what "errors / non-2xx"
} | tee "$out"
