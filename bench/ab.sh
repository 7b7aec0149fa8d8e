#!/usr/bin/env bash
# Before and after: two ringstore binaries measured turn about, each round on a fresh
# three-node static cluster (N=3, R=W=2, durability always), through the
# partition-aware client, so that the machine's drift falls on both alike.
#
#   bench/ab.sh BEFORE_BIN AFTER_BIN [rounds] [seconds] [workload…]
#
# Workloads are `ringstore bench run` workloads (c: reads, w: writes, a, b); the
# default is c and w, 3 rounds of 8 s, 32 requests in flight, 10,000 keys of 100
# bytes. Prints one line per run and the median requests/s of each side.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { echo "usage: bench/ab.sh BEFORE_BIN AFTER_BIN [rounds] [seconds] [workload…]" >&2; exit 2; }
before=$1 after=$2
rounds="${3:-3}"
seconds="${4:-8}"
shift $(( $# < 4 ? $# : 4 ))
workloads=("$@")
[[ ${#workloads[@]} -gt 0 ]] || workloads=(c w)
keys=10000
RINGSTORE_BIN=$before
source bench/lib.sh

runs="$work/runs"
for round in $(seq "$rounds"); do
  for side in before after; do
    RINGSTORE_BIN=${!side}
    rm -rf "$work"/n?
    start_static_nodes 18280 18290 3
    urls=$(printf 'http://127.0.0.1:%s,' "${node_http[@]}")
    for workload in "${workloads[@]}"; do
      line=$(bench_run "$side $workload" --mode direct --workload "$workload" --url "${urls%,}" --keys "$keys" \
        --concurrency 32 --duration "$seconds" --value-size 100)
      echo "round $round $line" | tee -a "$runs"
    done
    stop_all
  done
done
echo
for workload in "${workloads[@]}"; do
  for side in before after; do
    median=$(grep " $side $workload RESULT" "$runs" | sed 's/.*rps=\([0-9.]*\).*/\1/' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$workload $side: median $median requests/s"
  done
done
