#!/usr/bin/env bash
# Linearizable compare-and-set beside the eventual PUT and beside etcd, in one run:
# a three-node cluster (N=3, durability always), 32 connections spread over the
# three nodes; uncontended counter adds on distinct keys of a linearizable table,
# then 100-byte eventual PUTs (W=2), then etcd with three members on loopback
# (installed from Debian's etcd-server when missing) taking 100-byte puts through
# its v3 JSON gateway from wrk with the same connection count.
#
#   bench/cas.sh [seconds] [connections]
#
# Uses RINGSTORE_BIN if set, else builds the release binary. Prints a markdown
# table and writes it to bench/results/cas-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-32}"
source bench/lib.sh
command -v etcd >/dev/null || apt-get install -y etcd-server >/dev/null 2>&1 || { echo "install etcd (apt-get install etcd-server)" >&2; exit 1; }

http_ports=(18381 18382 18383)
rpc_ports=(18391 18392 18393)
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
curl -sf -XPUT "http://127.0.0.1:${http_ports[0]}/v1/tables/seats" -d '{"consistency":"linearizable"}' >/dev/null
sleep 1

# run NAME SCRIPT PORT… : wrk processes, one per port, sharing the connections; one summed RESULT line.
run() {
  local name=$1 script=$2; shift 2
  local ports=("$@") outputs=() runs=() share=$(( connections / $# )) i
  for i in "${!ports[@]}"; do
    local c=$share; [[ $i == 0 ]] && c=$(( connections - ($# - 1) * share ))
    WRK_ID=$i wrk -t1 -c"$c" -d"${seconds}s" -s "bench/wrk/$script" "http://127.0.0.1:${ports[$i]}" >"$work/wrk-$i.out" &
    runs+=($!)
    outputs+=("$work/wrk-$i.out")
  done
  for i in "${runs[@]}"; do wait "$i"; done
  sum_wrk "$name" "${outputs[@]}"
}

results=()
results+=("$(run 'Ringstore CAS (counter add, linearizable)' cas.lua "${http_ports[@]}")")
results+=("$(run 'Ringstore PUT (eventual, W=2)' put.lua "${http_ports[@]}")")
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

etcd_client=(18481 18482 18483)
etcd_peer=(18491 18492 18493)
cluster="e1=http://127.0.0.1:${etcd_peer[0]},e2=http://127.0.0.1:${etcd_peer[1]},e3=http://127.0.0.1:${etcd_peer[2]}"
for i in 0 1 2; do
  etcd --name "e$((i + 1))" --data-dir "$work/e$((i + 1))" \
    --listen-client-urls "http://127.0.0.1:${etcd_client[$i]}" --advertise-client-urls "http://127.0.0.1:${etcd_client[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${etcd_peer[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${etcd_peer[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new --log-level error >"$work/e$((i + 1)).log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do
  curl -sf -XPOST "http://127.0.0.1:${etcd_client[0]}/v3/kv/put" -d '{"key":"cmVhZHk=","value":"eA=="}' >/dev/null && break
  sleep 0.2
done
results+=("$(run 'etcd put (3 members)' etcd-put.lua "${etcd_client[@]}")")

date_utc=$(date -u +%Y-%m-%d)
out="bench/results/cas-$date_utc.md"
{
  echo "# Linearizable CAS beside eventual PUT and etcd, $date_utc"
  echo
  echo "Command: \`bench/cas.sh $seconds $connections\` — three wrk -t1 processes, one per node (or etcd member), $connections connections in all,"
  echo "-d${seconds}s. Ringstore: 3 nodes, N=3, \`--durability always\`; CAS is \`POST /v1/kv/seats/{key}/add?delta=1\` on distinct keys of a"
  echo "linearizable table; PUT is 100 bytes to the default table (W=2). etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'), 3 members, puts of 100 bytes"
  echo "through the v3 JSON gateway. All on one machine: $(machine). p50 and p99 are the worst of the three wrk runs."
  echo
  echo "| what | requests/s | p50 ms | p99 ms | non-2xx |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for line in "${results[@]}"; do
    name="${line%% RESULT*}"
    echo "| $name | $(field "$line" rps) | $(field "$line" p50_ms) | $(field "$line" p99_ms) | $(field "$line" non2xx) |"
  done
} | tee "$out"
