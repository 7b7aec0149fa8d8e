#!/usr/bin/env bash
# Three-node cluster benchmark over HTTP: N=3, R=2, W=2 (the default table),
# durability always, 100-byte values. Three wrk processes, one per node, share the
# connections, so every node coordinates a third of the load.
#
#   bench/cluster.sh [seconds] [connections]
#
# Uses RINGSTORE_BIN if set, else builds the release binary. Prints a markdown
# table and writes it to bench/results/cluster-3-nodes-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-32}"
keys=10000
source bench/lib.sh

http_ports=(18281 18282 18283)
rpc_ports=(18291 18292 18293)
peers="n1=127.0.0.1:${rpc_ports[0]},n2=127.0.0.1:${rpc_ports[1]},n3=127.0.0.1:${rpc_ports[2]}"
for i in 0 1 2; do
  "$RINGSTORE_BIN" node --id "n$((i + 1))" --data "$work/n$((i + 1))" --http "127.0.0.1:${http_ports[$i]}" \
    --rpc "127.0.0.1:${rpc_ports[$i]}" --peers "$peers" --durability always --log-level warning >"$work/n$((i + 1)).log" 2>&1 &
  pids+=($!)
done
for port in "${http_ports[@]}"; do
  for _ in $(seq 200); do
    reachable=$(curl -sf "http://127.0.0.1:$port/v1/cluster" | grep -o '"reachable":true' | wc -l || true)
    [[ "$reachable" == 3 ]] && break
    sleep 0.1
  done
done

python3 - "$keys" "${http_ports[@]}" <<'PY'
import http.client, sys
keys = int(sys.argv[1]); ports = [int(p) for p in sys.argv[2:]]
connections = [http.client.HTTPConnection("127.0.0.1", port) for port in ports]
for i in range(keys):
    connection = connections[i % len(connections)]
    connection.request("PUT", f"/v1/kv/default/key{i}", body=b"v" * 100, headers={"Content-Type": "application/octet-stream"})
    response = connection.getresponse(); response.read()
    assert response.status == 204, response.status
PY

run() { # name script -> one RESULT line summed over the three wrk runs
  local outputs=() runs=() share=$(( connections / 3 )) i
  for i in 0 1 2; do
    local c=$share; [[ $i == 0 ]] && c=$(( connections - 2 * share ))
    WRK_ID=$i KEYS=$keys wrk -t1 -c"$c" -d"${seconds}s" -s "bench/wrk/$2" "http://127.0.0.1:${http_ports[$i]}" >"$work/wrk-$i.out" &
    runs+=($!)
    outputs+=("$work/wrk-$i.out")
  done
  for i in "${runs[@]}"; do wait "$i"; done
  sum_wrk "$1" "${outputs[@]}"
}

results=()
results+=("$(run 'cluster GET r=2' get.lua)")
results+=("$(run 'cluster PUT w=2' put.lua)")

date_utc=$(date -u +%Y-%m-%d)
out="bench/results/cluster-3-nodes-$date_utc.md"
{
  echo "# Three-node cluster over HTTP, $date_utc"
  echo
  echo "Command: \`bench/cluster.sh $seconds $connections\` — three wrk -t1 processes, one per node, $connections connections in all,"
  echo "-d${seconds}s, 100-byte values, $keys preloaded keys, N=3 R=2 W=2, \`--durability always\`, all on one machine:"
  echo "$(machine). p50 and p99 are the worst of the three wrk runs."
  echo
  echo "| what | requests/s | p50 ms | p99 ms | non-2xx |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for line in "${results[@]}"; do
    name="${line%% RESULT*}"
    echo "| $name | $(field "$line" rps) | $(field "$line" p50_ms) | $(field "$line" p99_ms) | $(field "$line" non2xx) |"
  done
} | tee "$out"
