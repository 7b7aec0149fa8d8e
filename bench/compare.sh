#!/usr/bin/env bash
# Ringstore side by side with nginx, Redis and etcd, measured in one run on this
# machine, with the same load shape: $connections connections, 100-byte values,
# $seconds s per measurement, wrk with the same Lua logic for Ringstore and etcd.
#
#   bench/compare.sh [seconds] [connections]
#
# Single node: nginx serving a static 100-byte file (the loopback HTTP ceiling),
# one Ringstore node with --durability always (group commit) over HTTP, Redis
# (in memory, no persistence) through redis-benchmark.
# Three nodes: Ringstore N=3 R=2 W=2, durability always, over HTTP (wrk, one process
# per node sharing the connections), through the partition-aware Swift client
# (`ringstore bench run --mode direct`), and linearizable counter adds (CAS: each on
# a new key, and on 1,000 counters that are added to again and again); etcd
# with three members through its v3 JSON gateway (puts, and linearizable reads).
#
# Installs what it needs from Debian's packages (wrk, nginx, redis-server, etcd-server).
# Uses RINGSTORE_BIN if set, else builds the release binary. Prints a markdown table
# and writes it to bench/results/compare-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-32}"
keys=10000
source bench/lib.sh
for tool in nginx:nginx redis-server:redis-server redis-benchmark:redis-tools etcd:etcd-server; do
  need "${tool%%:*}" "${tool##*:}"
done
results=()

wrk_one() { # name url script: wrk -t2 against one endpoint; one RESULT line
  echo "$1 $(KEYS=$keys wrk -t2 -c"$connections" -d"${seconds}s" -s "bench/wrk/$3" "$2" | grep '^RESULT')"
}

direct() { # name workload: the partition-aware client, $connections in flight; one RESULT line
  bench_run "$1" --mode direct --workload "$2" --url "$urls" --keys "$keys" --concurrency "$connections" --duration "$seconds" \
    --json "$work/direct-$2.json"
}

# --- single node ------------------------------------------------------------------

mkdir -p "$work/www" "$work/nginx"
head -c 100 /dev/zero | tr '\0' 'v' >"$work/www/v"
chmod 755 "$work" "$work/www"  # nginx workers run as an unprivileged user
cat >"$work/nginx.conf" <<EOF
worker_processes $(nproc);
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:18802; root $work/www; default_type application/octet-stream; }
}
EOF
nginx -c "$work/nginx.conf" -p "$work/nginx" >"$work/nginx.log" 2>&1 &
pids+=($!)
"$RINGSTORE_BIN" node --data "$work/single" --http 127.0.0.1:18801 --durability always --log-level warning >"$work/single.log" 2>&1 &
pids+=($!)
for url in http://127.0.0.1:18802/v http://127.0.0.1:18801/healthz; do
  for _ in $(seq 100); do curl -sf "$url" >/dev/null 2>&1 && break; sleep 0.1; done
done
preload_ringstore 18801
results+=("$(wrk_one 'nginx static GET' http://127.0.0.1:18802/v report.lua)")
results+=("$(wrk_one 'Ringstore 1 node GET' http://127.0.0.1:18801 get.lua)")
results+=("$(wrk_one 'Ringstore 1 node PUT (durable, group commit)' http://127.0.0.1:18801 put.lua)")
stop_all

redis-server --port 18803 --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p 18803 ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -h 127.0.0.1 -p 18803 -c "$connections" -n $(( seconds * 60000 )) -d 100 -r "$keys" -t set,get --csv --threads 2 \
  >"$work/redis.csv" 2>/dev/null
while IFS=, read -r test rps avg min p50 p95 p99 max; do
  test=${test//\"/}
  [[ "$test" == SET || "$test" == GET ]] || continue
  results+=("Redis $test (in memory) RESULT rps=${rps//\"/} p50_ms=${p50//\"/} p99_ms=${p99//\"/} non2xx=0")
done <"$work/redis.csv"
stop_all

# --- three nodes ------------------------------------------------------------------

start_static_nodes 18810 18820 3 --durability always
urls="http://127.0.0.1:${node_http[0]},http://127.0.0.1:${node_http[1]},http://127.0.0.1:${node_http[2]}"
curl -sf -XPUT "http://127.0.0.1:${node_http[0]}/v1/tables/seats" -d '{"consistency":"linearizable"}' >/dev/null
preload_ringstore "${node_http[@]}"
export KEYS=$keys
results+=("$(wrk_spread 'Ringstore 3 nodes GET (HTTP, R=2)' get.lua "${node_http[@]}")")
results+=("$(wrk_spread 'Ringstore 3 nodes PUT (HTTP, W=2)' put.lua "${node_http[@]}")")
results+=("$(direct 'Ringstore 3 nodes GET (Swift client, R=2)' c)")
results+=("$(direct 'Ringstore 3 nodes PUT (Swift client, W=2)' w)")
results+=("$(wrk_spread 'Ringstore 3 nodes CAS (counter add, each on a new key)' cas.lua "${node_http[@]}")")
results+=("$(KEYS=1000 wrk_spread 'Ringstore 3 nodes CAS (counter add on 1000 counters)' cas-keys.lua "${node_http[@]}")")
ringstore_rss=$(for pid in "${pids[@]}"; do awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null; done | sort -n | tail -1)
stop_all

start_etcd 18830 18840 3
python3 - "$keys" "${etcd_client[0]}" <<'PY'
import base64, http.client, json, sys
keys, port = int(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", port)
for i in range(keys):
    body = json.dumps({"key": base64.b64encode(f"key{i}".encode()).decode(), "value": base64.b64encode(b"v" * 100).decode()})
    connection.request("POST", "/v3/kv/put", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse(); response.read()
    assert response.status == 200, response.status
PY
results+=("$(wrk_spread 'etcd 3 members GET (linearizable range)' etcd-get.lua "${etcd_client[@]}")")
results+=("$(wrk_spread 'etcd 3 members PUT' etcd-put.lua "${etcd_client[@]}")")
stop_all

# --- the table --------------------------------------------------------------------

date_utc=$(date -u +%Y-%m-%d)
out="bench/results/compare-$date_utc.md"
printf '%s\n' "${results[@]}" >"$work/results.txt"
python3 - "$work/results.txt" "$seconds" "$connections" "$keys" "$(machine)" "$ringstore_rss" \
  "$(nginx -v 2>&1 | cut -d/ -f2)" "$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)" \
  "$(etcd --version 2>/dev/null | head -1 | awk '{print $3}')" "$(git rev-parse --short HEAD)" <<'PY' | tee "$out"
import re, sys
path, seconds, connections, keys, machine, rss, nginx, redis, etcd, commit = sys.argv[1:]
rows = {}
for line in open(path):
    name, rest = line.split(" RESULT ", 1)
    values = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    rows[name] = {k: float(v) for k, v in values.items()}
def row(name):
    r = rows[name]
    return f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {int(r['non2xx'])} |"
def ratio(a, b, key="rps"):
    return rows[a][key] / rows[b][key]
print(f"# Ringstore beside nginx, Redis and etcd, {__import__('datetime').date.today()}")
print()
print(f"Command: `bench/compare.sh {seconds} {connections}` at {commit}. One run on one machine: {machine}.")
print(f"{connections} connections (or requests in flight), {seconds} s per row, 100-byte values, {keys} preloaded keys for reads.")
print(f"wrk runs the same Lua logic against Ringstore's HTTP API and etcd's v3 JSON gateway (bench/wrk/).")
print(f"nginx {nginx} serves a static 100-byte file; Redis {redis} (no persistence) is driven by redis-benchmark --threads 2;")
print(f"etcd {etcd} runs three members on loopback. Ringstore runs with `--durability always` (fsync, group commit).")
print()
print("| what | requests/s | p50 ms | p99 ms | errors |")
print("| --- | ---: | ---: | ---: | ---: |")
for name in rows:
    print(row(name))
print()
print("| ratio | measured | target |")
print("| --- | ---: | ---: |")
get3, put3 = "Ringstore 3 nodes GET (HTTP, R=2)", "Ringstore 3 nodes PUT (HTTP, W=2)"
eget, eput = "etcd 3 members GET (linearizable range)", "etcd 3 members PUT"
print(f"| 3 nodes PUT / etcd PUT | {ratio(put3, eput):.2f}× | ≥ 3× |")
print(f"| 3 nodes GET / etcd linearizable GET | {ratio(get3, eget):.2f}× | ≥ 3× |")
print(f"| 3 nodes PUT p99 / etcd PUT p99 | {ratio(put3, eput, 'p99_ms'):.2f} | ≤ 1 |")
print(f"| 3 nodes GET p99 / etcd GET p99 | {ratio(get3, eget, 'p99_ms'):.2f} | ≤ 1 |")
print(f"| CAS on 1000 counters / etcd PUT | {ratio('Ringstore 3 nodes CAS (counter add on 1000 counters)', eput):.2f}× | ≥ 1.5× |")
print(f"| CAS each on a new key / etcd PUT | {ratio('Ringstore 3 nodes CAS (counter add, each on a new key)', eput):.2f}× | — |")
print(f"| 1 node GET / nginx static GET | {ratio('Ringstore 1 node GET', 'nginx static GET'):.0%} | ≥ 50% |")
print(f"| 1 node PUT / nginx static GET | {ratio('Ringstore 1 node PUT (durable, group commit)', 'nginx static GET'):.0%} | ≥ 40% |")
if "Redis GET (in memory)" in rows:
    print(f"| 1 node GET / Redis GET | {ratio('Ringstore 1 node GET', 'Redis GET (in memory)'):.0%} | — |")
    print(f"| 1 node PUT / Redis SET | {ratio('Ringstore 1 node PUT (durable, group commit)', 'Redis SET (in memory)'):.0%} | — |")
dget, dput = rows["Ringstore 3 nodes GET (Swift client, R=2)"], rows["Ringstore 3 nodes PUT (Swift client, W=2)"]
print(f"| Swift client GET/s, p99 | {dget['rps']:,.0f}, {dget['p99_ms']:.2f} ms | ≥ 60,000, ≤ 2 ms |")
print(f"| Swift client PUT/s, p99 | {dput['rps']:,.0f}, {dput['p99_ms']:.2f} ms | ≥ 40,000, ≤ 2 ms |")
if rss:
    print()
    print(f"Largest resident size of a Ringstore node at the end of the three-node runs: {int(rss) / 1024:.0f} MiB.")
PY
