#!/usr/bin/env bash
# Resident size of a node holding many keys: one node (durability always), filled
# with KEYS keys of 100-byte values through `ringstore bench run` (every key written
# once), then its VmRSS and VmHWM from /proc, and again after a restart (recovery
# rebuilds the key directory from the segments).
#
#   bench/memory.sh [keys]
#
# Uses RINGSTORE_BIN if set, else builds the release binary. Prints a markdown
# table and writes it to bench/results/memory-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
keys="${1:-1000000}"
source bench/lib.sh

start_node() {
  "$RINGSTORE_BIN" node --data "$work/node" --http 127.0.0.1:18951 --durability always --log-level warning >>"$work/node.log" 2>&1 &
  node_pid=$!
  pids+=($node_pid)
  for _ in $(seq 600); do curl -sf http://127.0.0.1:18951/healthz >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the node did not come up" >&2; exit 1
}
status() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$node_pid/status"; }

start_node
started=$(date +%s)
"$RINGSTORE_BIN" bench run --url http://127.0.0.1:18951 --workload c --keys "$keys" --operations 1 --concurrency 64 --quiet >"$work/load.out"
loaded_seconds=$(( $(date +%s) - started ))
held=$(curl -sf http://127.0.0.1:18951/healthz | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"])')
rss_loaded=$(status VmRSS); hwm_loaded=$(status VmHWM)
disk=$(du -sk "$work/node" | cut -f1)
kill "$node_pid"; wait "$node_pid" 2>/dev/null || true
started=$(date +%s)
start_node
recovered_seconds=$(( $(date +%s) - started ))
sleep 2
rss_restarted=$(status VmRSS); hwm_restarted=$(status VmHWM)

date_utc=$(date -u +%Y-%m-%d)
out="bench/results/memory-$date_utc.md"
{
  echo "# Resident size of a node holding $keys keys, $date_utc"
  echo
  echo "Command: \`bench/memory.sh $keys\` at $(git rev-parse --short HEAD). One node, \`--durability always\`, every key written once"
  echo "with a 100-byte value by \`ringstore bench run --workload c --keys $keys --operations 1 --concurrency 64\` (loaded in ${loaded_seconds} s);"
  echo "the node reports $held keys. Data folder: $(( disk / 1024 )) MiB. Machine: $(machine)."
  echo
  echo "| when | VmRSS MiB | VmHWM MiB | bytes per key (RSS) |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| after loading | $(( rss_loaded / 1024 )) | $(( hwm_loaded / 1024 )) | $(( rss_loaded * 1024 / keys )) |"
  echo "| after a restart (recovered in ${recovered_seconds} s) | $(( rss_restarted / 1024 )) | $(( hwm_restarted / 1024 )) | $(( rss_restarted * 1024 / keys )) |"
  echo
  echo "Target: at most 200 MB resident per node holding 1,000,000 keys."
} | tee "$out"
