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
