#!/usr/bin/env bash
# What anti-entropy costs foreground reads: three nodes (N=3, R=W=2, durability
# always) with KEYS preloaded keys, GETs from wrk (16 connections on each of n1 and
# n2) for SECONDS in three phases:
#   1. background anti-entropy off on every node (the baseline);
#   2. off, right after n3 lost its disk (killed, storage deleted, restarted): the
#      reads' own read repair is all that refills it;
#   3. on, right after n3 lost its disk again, while the exchanges copy every key
#      back to it (the reads still repair what they touch);
#   4. on, with nothing left to repair (restarted; rounds compare trees and find
#      them equal);
#   5. off, on the same data (restarted again).
# Anti-entropy's own cost is phase 3 against phase 2 while it repairs, and phase 4
# against phase 5 while it finds nothing.
#
#   bench/aae-impact.sh [seconds] [keys]
#
# Uses RINGSTORE_BIN if set, else builds the release binary. Prints a markdown table
# and writes it to bench/results/aae-impact-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
keys="${2:-20000}"
source bench/lib.sh

http_ports=(18581 18582 18583)
rpc_ports=(18591 18592 18593)
peers="n1=127.0.0.1:${rpc_ports[0]},n2=127.0.0.1:${rpc_ports[1]},n3=127.0.0.1:${rpc_ports[2]}"
node_pids=(0 0 0)
start_node() { # index pause-ms
  local i=$1
  "$RINGSTORE_BIN" node --id "n$((i + 1))" --data "$work/n$((i + 1))" --http "127.0.0.1:${http_ports[$i]}" \
    --rpc "127.0.0.1:${rpc_ports[$i]}" --peers "$peers" --durability always --log-level warning \
    --anti-entropy-pause-milliseconds "$2" >>"$work/n$((i + 1)).log" 2>&1 &
  node_pids[$i]=$!
  pids+=($!)
}
stop_node() { kill -TERM "${node_pids[$1]}" 2>/dev/null || true; wait "${node_pids[$1]}" 2>/dev/null || true; }
wait_reachable() {
  for port in "${http_ports[@]}"; do
    for _ in $(seq 300); do
      [[ "$(curl -sf "http://127.0.0.1:$port/v1/cluster" | grep -o '"reachable":true' | wc -l || true)" == 3 ]] && break
      sleep 0.1
    done
  done
}
keys_on() { curl -sf "http://127.0.0.1:${http_ports[$1]}/healthz" | sed -n 's/.*"keys":\([0-9]*\).*/\1/p'; }
repaired_on() { curl -sf "http://127.0.0.1:${http_ports[$1]}/metrics" | awk '/^ringstore_aae_keys_repaired_total/ {s+=$2} END {print s+0}'; }

export KEYS=$keys
load() { connections=32 wrk_spread "$1" get.lua "${http_ports[0]}" "${http_ports[1]}"; }  # 16 connections on each of n1 and n2

for i in 0 1 2; do start_node "$i" 0; done
wait_reachable
preload_query=w=3 preload_ringstore "${http_ports[@]}"

restart_all() { # pause-ms [wipe-n3]: stops every node (n3 losing its disk with wipe-n3) and starts them again
  for i in 0 1 2; do stop_node "$i"; done
  if [[ "${2:-}" == wipe-n3 ]]; then rm -rf "$work/n3/storage" "$work/n3/hints"; fi
  for i in 0 1 2; do start_node "$i" "$1"; done
  wait_reachable
}

results=()
results+=("$(load '1. anti-entropy off')")
restart_all 0 wipe-n3
before=$(keys_on 2)
results+=("$(load '2. off, n3 lost its disk (read repair alone)')")
alone="read repair alone brought n3 from $before to $(keys_on 2) keys in phase 2"
restart_all 100 wipe-n3
before=$(keys_on 2)
results+=("$(load '3. on, repairing n3 (lost its disk again)')")
during="n3 held $before keys before phase 3 and $(keys_on 2) after it; $(( $(repaired_on 0) + $(repaired_on 1) + $(repaired_on 2) )) keys repaired by anti-entropy by then"
for _ in $(seq 600); do [[ "$(keys_on 2)" -ge "$(keys_on 0)" ]] && break; sleep 0.5; done
# Phases 4 and 5 both start from a restart on the same data, so that only the
# exchanges differ between them (not the refill's after-effects).
restart_all 100
repaired_before=$(( $(repaired_on 0) + $(repaired_on 1) + $(repaired_on 2) ))
results+=("$(load '4. on, nothing to repair (restarted)')")
after="anti-entropy repaired $(( $(repaired_on 0) + $(repaired_on 1) + $(repaired_on 2) - repaired_before )) keys during phase 4"
restart_all 0
results+=("$(load '5. off, same data (restarted)')")

date_utc=$(date -u +%Y-%m-%d)
out="bench/results/aae-impact-$date_utc.md"
{
  echo "# Anti-entropy's cost to foreground reads, $date_utc"
  echo
  echo "Command: \`bench/aae-impact.sh $seconds $keys\` — 3 nodes (static cluster), N=3 R=W=2, \`--durability always\`, $keys keys of"
  echo "100 bytes; two wrk -t1 -c16 -d${seconds}s GET runs (on n1 and n2) per phase; background exchanges 100 ms apart, at most 500"
  echo "keys each. All on one machine: $(machine). $alone; $during; $after."
  echo
  results_table phase | sed '1s/requests\/s/GET\/s/'
} | tee "$out"
