# Shared by the benchmark scripts: sourced, not run.
# Sets RINGSTORE_BIN (building the release binary if it is not set), makes sure wrk
# is installed, and gives a scratch folder $work whose processes ($pids) are
# stopped and whose files are removed on exit.
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }; }
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
