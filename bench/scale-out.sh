#!/usr/bin/env bash
# Scaling out under load: 2 ring servers and 5 nodes (N=3, R=W=2, durability always)
# hold KEYS keys of 100 bytes; a sixth node joins while a client writes RATE new keys
# per second through the ring servers (retrying the other one). Reports how long the
# join took, the client errors during it, and the write latency.
#
#   bench/scale-out.sh [keys] [rate]        (defaults: 1000000 1000)
#
# Uses RINGSTORE_BIN if set, else builds the release binary. Writes
# bench/results/scale-out-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
keys="${1:-1000000}"
rate="${2:-1000}"
source bench/lib.sh

token=bench-token
rs_http=(18380 18381); rs_rpc=(18390 18391)
join="127.0.0.1:${rs_rpc[0]},127.0.0.1:${rs_rpc[1]}"
for i in 0 1; do
  other=$((1 - i))
  "$RINGSTORE_BIN" ring --id "rs$((i + 1))" --role "$([[ $i == 0 ]] && echo primary || echo secondary)" --data "$work/rs$((i + 1))" \
    --http "127.0.0.1:${rs_http[$i]}" --rpc "127.0.0.1:${rs_rpc[$i]}" --peer "rs$((other + 1))=127.0.0.1:${rs_rpc[$other]}" \
    --initial-nodes 5 --admin-token "$token" --event-loop-threads 1 --log-level warning >"$work/rs$((i + 1)).log" 2>&1 &
  pids+=($!)
done
start_node() {
  local i="$1"
  "$RINGSTORE_BIN" node --id "n$i" --data "$work/n$i" --http "127.0.0.1:$((18400 + i))" --rpc "127.0.0.1:$((18500 + i))" \
    --join "$join" --durability always --event-loop-threads 1 --log-level notice >"$work/n$i.log" 2>&1 &
  pids+=($!)
}
for i in 1 2 3 4 5; do start_node "$i"; done
urls="http://127.0.0.1:${rs_http[0]},http://127.0.0.1:${rs_http[1]}"
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:${rs_http[0]}/v1/cluster" | grep -q '"ring_epoch":[1-9]' && break
  sleep 0.1
done
sleep 1

echo "loading $keys keys…" >&2
load_started=$(date +%s.%N)
"$RINGSTORE_BIN" bench run --url "$urls" --mode direct --workload c --keys "$keys" --operations 1 --concurrency 64 --quiet >"$work/load.out"
load_seconds=$(echo "$(date +%s.%N) - $load_started" | bc)
echo "loaded in ${load_seconds} s" >&2

start_node 6
for _ in $(seq 100); do
  curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:${rs_http[0]}/v1/admin/status" | grep -q '"id":"n6"' && break
  sleep 0.1
done

# The writer: RATE puts per second (open loop, spread over 64 threads, so that slow replies do not lower the rate), each retried on
# the other ring server; counts requests that failed beyond their retries.
python3 - "$rate" "${rs_http[@]}" >"$work/writer.json" 2>"$work/writer.err" <<'PY' &
import http.client, json, sys, threading, time
rate = int(sys.argv[1]); ports = [int(p) for p in sys.argv[2:]]
stop_file = "/tmp/ringstore-scale-out-stop"
threads = 64
latencies, errors, done = [], [], [0]
lock = threading.Lock()
def worker(index):
    connections = {port: http.client.HTTPConnection("127.0.0.1", port, timeout=10) for port in ports}
    interval = threads / rate
    next_at = time.monotonic()
    sequence = 0
    while not stop.is_set():
        next_at += interval
        key = f"during-{index}-{sequence}"; sequence += 1
        started = time.monotonic()
        ok = False
        for attempt in range(6):
            port = ports[attempt % 2]
            try:
                connection = connections[port]
                connection.request("PUT", f"/v1/kv/default/{key}", body=b"w" * 100)
                response = connection.getresponse(); response.read()
                if response.status == 204:
                    ok = True
                    break
            except Exception:
                connections[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            time.sleep(0.05)
        with lock:
            done[0] += 1
            latencies.append(time.monotonic() - started)
            if not ok: errors.append(key)
        delay = next_at - time.monotonic()
        if delay > 0: time.sleep(delay)
stop = threading.Event()
pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
started = time.monotonic()
for t in pool: t.start()
import os
while not os.path.exists(stop_file): time.sleep(0.1)
stop.set()
for t in pool: t.join()
elapsed = time.monotonic() - started
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0
print(json.dumps({"requests": done[0], "errors": len(errors), "seconds": elapsed, "rate": done[0] / elapsed,
                  "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": pick(1.0)}))
PY
writer=$!
rm -f /tmp/ringstore-scale-out-stop
sleep 3
admin() { "$RINGSTORE_BIN" admin "$@" --url "$urls" --token "$token"; }
admin join n6 >&2
join_started=$(date +%s.%N)
admin commit >/dev/null
while admin status --json | grep -q '"transition":{'; do sleep 0.5; done
join_seconds=$(echo "$(date +%s.%N) - $join_started" | bc)
sleep 3
touch /tmp/ringstore-scale-out-stop
wait "$writer"
rm -f /tmp/ringstore-scale-out-stop
status=$(admin status)
n6_keys=$(curl -sf "http://127.0.0.1:18406/healthz" | sed -n 's/.*"keys":\([0-9]*\).*/\1/p')
writer_json=$(cat "$work/writer.json")
read -r requests errors wrate p50 p99 maxms < <(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['requests'], d['errors'], round(d['rate']), round(d['p50_ms'],1), round(d['p99_ms'],1), round(d['max_ms'],1))" "$writer_json")

out="bench/results/scale-out-$(date +%F).md"
{
  echo "# Adding a sixth node under load"
  echo
  echo "- command: \`bench/scale-out.sh $keys $rate\`"
  echo "- date: $(date -u +%FT%TZ)"
  echo "- machine: $(machine)"
  echo "- cluster: 2 ring servers, 5 nodes (then 6), 256 partitions, N=3 R=W=2, durability always, one event-loop thread per process, all on this machine"
  echo
  echo "| measure | value |"
  echo "| --- | --- |"
  echo "| keys held before the join | $keys (loaded in ${load_seconds%.*} s) |"
  echo "| join: commit to new ring | ${join_seconds%.*} s |"
  echo "| keys on the new node afterwards | $n6_keys |"
  echo "| writes during the join | $requests at $wrate/s (target $rate/s) |"
  echo "| client errors (after retries) | $errors |"
  echo "| write latency p50 / p99 / max | $p50 / $p99 / $maxms ms |"
  echo
  echo '```'
  echo "$status"
  echo '```'
} | tee "$out"
