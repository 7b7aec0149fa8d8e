#!/usr/bin/env bash
# Linearizable compare-and-set beside the eventual PUT and beside etcd, in one run:
# a three-node cluster (N=3, durability always), 32 connections spread over the
# three nodes; uncontended counter adds on a linearizable table, first each on a
# new key (every add is a key's first change) and then on 1,000 counters (updates
# of keys that exist, the leader holding each key's promise), then 100-byte
# eventual PUTs (W=2), then etcd with three members on loopback
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
start_static_nodes 18380 18390 3 --durability always
curl -sf -XPUT "http://127.0.0.1:${node_http[0]}/v1/tables/seats" -d '{"consistency":"linearizable"}' >/dev/null
sleep 1

results=()
results+=("$(wrk_spread 'Ringstore CAS (counter add on a new key each time)' cas.lua "${node_http[@]}")")
results+=("$(KEYS=1000 wrk_spread 'Ringstore CAS (counter add on 1,000 counters)' cas-keys.lua "${node_http[@]}")")
results+=("$(wrk_spread 'Ringstore PUT (eventual, W=2)' put.lua "${node_http[@]}")")
stop_all

start_etcd 18480 18490 3
results+=("$(wrk_spread 'etcd put (3 members)' etcd-put.lua "${etcd_client[@]}")")

date_utc=$(date -u +%Y-%m-%d)
out="bench/results/cas-$date_utc.md"
{
  echo "# Linearizable CAS beside eventual PUT and etcd, $date_utc"
  echo
  echo "Command: \`bench/cas.sh $seconds $connections\` — three wrk -t1 processes, one per node (or etcd member), $connections connections in all,"
  echo "-d${seconds}s. Ringstore: 3 nodes, N=3, \`--durability always\`; CAS is \`POST /v1/kv/seats/{key}/add?delta=1\` on a"
  echo "linearizable table, on a new key each time or on 1,000 counters picked at random; PUT is 100 bytes to the default table (W=2). etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'), 3 members, puts of 100 bytes"
  echo "through the v3 JSON gateway. All on one machine: $(machine). p50 and p99 are the worst of the three wrk runs."
  echo
  results_table
} | tee "$out"
