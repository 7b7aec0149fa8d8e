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

start_static_nodes 18280 18290 3 --durability always

preload_ringstore "${node_http[@]}"

export KEYS=$keys
results=()
results+=("$(wrk_spread 'cluster GET r=2' get.lua "${node_http[@]}")")
results+=("$(wrk_spread 'cluster PUT w=2' put.lua "${node_http[@]}")")

date_utc=$(date -u +%Y-%m-%d)
out="bench/results/cluster-3-nodes-$date_utc.md"
{
  echo "# Three-node cluster over HTTP, $date_utc"
  echo
  echo "Command: \`bench/cluster.sh $seconds $connections\` — three wrk -t1 processes, one per node, $connections connections in all,"
  echo "-d${seconds}s, 100-byte values, $keys preloaded keys, N=3 R=2 W=2, \`--durability always\`, all on one machine:"
  echo "$(machine). p50 and p99 are the worst of the three wrk runs."
  echo
  results_table
} | tee "$out"
