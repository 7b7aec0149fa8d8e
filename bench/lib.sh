# Shared by the benchmark scripts: sourced, not run.
# Sets RINGSTORE_BIN (building the release binary if it is not set), makes sure wrk
# is installed, and gives a scratch folder $work whose processes ($pids) are
# stopped and whose files are removed on exit.
# need COMMAND PACKAGE: installs PACKAGE from Debian's archive when COMMAND is missing,
# refreshing the package lists first if they do not know it (a fresh machine's do not).
need() {
  command -v "$1" >/dev/null && return 0
  apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; } \
    || { echo "install $2 (apt-get install $2)" >&2; exit 1; }
}
need wrk wrk
if [[ -z "${RINGSTORE_BIN:-}" ]]; then
  swift build -c release --scratch-path .build-release >/dev/null
  RINGSTORE_BIN="$PWD/.build-release/release/ringstore"
fi
work="$(mktemp -d /tmp/ringstore-bench-XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# field LINE NAME: the number after NAME= in a RESULT line.
field() { sed -n "s/.*$2=\([0-9.]*\).*/\1/p" <<<"$1"; }

# machine: one line describing this machine, for result files.
machine() { echo "$(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"; }

# sum_wrk NAME FILE…: one RESULT line for wrk runs that shared the load: requests/s
# summed, the worst p50 and p99, non-2xx summed.
sum_wrk() {
  python3 - "$@" <<'PY'
import re, sys
name, files = sys.argv[1], sys.argv[2:]
rows = [tuple(float(x) for x in re.search(r"RESULT rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+) non2xx=(\d+)", open(p).read()).groups()) for p in files]
print(f"{name} RESULT rps={sum(r[0] for r in rows):.1f} p50_ms={max(r[1] for r in rows):.3f} p99_ms={max(r[2] for r in rows):.3f} non2xx={int(sum(r[3] for r in rows))}")
PY
}

# start_static_nodes HTTP_BASE RPC_BASE COUNT [node options…]: nodes n1…nCOUNT of a
# static cluster (--peers) on 127.0.0.1, HTTP on HTTP_BASE+i and RPC on RPC_BASE+i;
# waits until each sees every node reachable. Sets node_http (the HTTP ports).
# The nodes share this machine, so each runs one event loop, as under `ringstore dev`
# (docs/decisions/0016-one-event-loop-per-co-located-node.md); options given after
# COUNT come later and win.
start_static_nodes() {
  local http_base=$1 rpc_base=$2 count=$3 i peers="" port reachable
  shift 3
  node_http=()
  for i in $(seq "$count"); do peers+="${peers:+,}n$i=127.0.0.1:$((rpc_base + i))"; done
  for i in $(seq "$count"); do
    node_http+=($((http_base + i)))
    "$RINGSTORE_BIN" node --id "n$i" --data "$work/n$i" --http "127.0.0.1:$((http_base + i))" --rpc "127.0.0.1:$((rpc_base + i))" \
      --peers "$peers" --log-level warning --event-loop-threads 1 "$@" >"$work/n$i.log" 2>&1 &
    pids+=($!)
  done
  for port in "${node_http[@]}"; do
    for _ in $(seq 300); do
      reachable=$(curl -sf "http://127.0.0.1:$port/v1/cluster" | grep -o '"reachable":true' | wc -l || true)
      [[ "$reachable" == "$count" ]] && break
      sleep 0.1
    done
  done
}

# start_etcd CLIENT_BASE PEER_BASE COUNT: etcd members e1…eCOUNT on 127.0.0.1 (installed
# from Debian's etcd-server when missing), client ports CLIENT_BASE+i; waits for a put.
# Sets etcd_client (the client ports).
start_etcd() {
  local client_base=$1 peer_base=$2 count=$3 i cluster=""
  need etcd etcd-server
  etcd_client=()
  for i in $(seq "$count"); do cluster+="${cluster:+,}e$i=http://127.0.0.1:$((peer_base + i))"; done
  for i in $(seq "$count"); do
    etcd_client+=($((client_base + i)))
    etcd --name "e$i" --data-dir "$work/e$i" \
      --listen-client-urls "http://127.0.0.1:$((client_base + i))" --advertise-client-urls "http://127.0.0.1:$((client_base + i))" \
      --listen-peer-urls "http://127.0.0.1:$((peer_base + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((peer_base + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new --log-level error >"$work/e$i.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 100); do
    curl -sf -XPOST "http://127.0.0.1:${etcd_client[0]}/v3/kv/put" -d '{"key":"cmVhZHk=","value":"eA=="}' >/dev/null && return 0
    sleep 0.2
  done
  echo "etcd did not come up" >&2; exit 1
}

# stop_all: stops every process started so far (the scratch folder stays).
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

# wrk_spread NAME SCRIPT PORT…: one wrk -t1 per port on 127.0.0.1, sharing $connections
# connections for $seconds s (WRK_ID tells them apart); one summed RESULT line.
wrk_spread() {
  local name=$1 script=$2; shift 2
  local ports=("$@") outputs=() runs=() share=$(( connections / $# )) i c
  for i in "${!ports[@]}"; do
    c=$share; [[ $i == 0 ]] && c=$(( connections - ($# - 1) * share ))
    WRK_ID=$i wrk -t1 -c"$c" -d"${seconds}s" -s "bench/wrk/$script" "http://127.0.0.1:${ports[$i]}" >"$work/wrk-$i.out" &
    runs+=($!)
    outputs+=("$work/wrk-$i.out")
  done
  for i in "${runs[@]}"; do wait "$i"; done
  sum_wrk "$name" "${outputs[@]}"
}

# preload_ringstore PORT…: key0 … key($keys-1) of the default table, 100 bytes each,
# spread over the nodes at PORT… (get.lua reads them); $preload_query, if set, is
# the writes' query string (such as w=3).
preload_ringstore() {
  python3 - "$keys" "${preload_query:-}" "$@" <<'PY'
import http.client, sys
keys, query, ports = int(sys.argv[1]), sys.argv[2], [int(p) for p in sys.argv[3:]]
suffix = f"?{query}" if query else ""
connections = [http.client.HTTPConnection("127.0.0.1", port) for port in ports]
for i in range(keys):
    connection = connections[i % len(connections)]
    connection.request("PUT", f"/v1/kv/default/key{i}{suffix}", body=b"v" * 100, headers={"Content-Type": "application/octet-stream"})
    response = connection.getresponse(); response.read()
    assert response.status == 204, response.status
PY
}

# results_table [FIRST-COLUMN] [LAST-COLUMN]: the markdown table of the RESULT lines in
# the array `results` (name, requests/s, p50, p99, and non-2xx or errors).
results_table() {
  local line name
  echo "| ${1:-what} | requests/s | p50 ms | p99 ms | ${2:-non-2xx} |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for line in "${results[@]}"; do
    name="${line%% RESULT*}"
    echo "| $name | $(field "$line" rps) | $(field "$line" p50_ms) | $(field "$line" p99_ms) | $(field "$line" non2xx) |"
  done
}

# bench_run NAME OPTION…: `ringstore bench run --quiet OPTION…`, its figures as one RESULT
# line in the shape wrk's have (errors in place of non-2xx).
bench_run() {
  local name=$1 line
  shift
  line=$("$RINGSTORE_BIN" bench run --quiet "$@" | grep '^RESULT')
  echo "$name RESULT rps=$(field "$line" rps) p50_ms=$(field "$line" p50_ms) p99_ms=$(field "$line" p99_ms) non2xx=$(field "$line" errors)"
}
