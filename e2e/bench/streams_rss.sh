#!/usr/bin/env bash
# hal0's RSS with N open streams, in a fresh process (no load before): the figure e2e/bench/run.sh
# measures after its load rounds, without the heap those rounds leave behind. Results:
# BENCHMARKS.md. Not part of the test suite.
#
#   cargo build --release --bin hal0 --bin hal0-bench-upstream && e2e/bench/streams_rss.sh
#
# Knobs: N=1000 streams; MODEL=bench (the local slot) or bench-remote (the openai-compatible
# slot); LOAD=<seconds>: first `wrk -c128` that long against each model in LOAD_MODELS (default
# "bench"), as run.sh's rounds do before its streams; binaries from $CARGO_TARGET_DIR/release
# (default target/release).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=${CARGO_TARGET_DIR:-"$ROOT/target"}/release
N=${N:-1000}
MODEL=${MODEL:-bench}
W=$(mktemp -d /tmp/hal0-streams.XXXXXX)
HAL0_PID="" HOLD_PID=""
cleanup() {
    set +e
    [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null
    [ -n "$HAL0_PID" ] && kill -TERM "$HAL0_PID" 2>/dev/null && wait "$HAL0_PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/cfg"
touch "$W/bench.gguf"
read -r HP SP < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
cat >"$W/cfg/hal0.toml" <<C
[server]
listen = "127.0.0.1:$HP"
port_range = [$SP, $SP]
state_dir = "$W/state"
models_dir = "$W/models"
stop_grace = "3s"

[providers."llama.cpp"]
command = ["$T/hal0-bench-upstream", "serve"]

[slots.bench]
provider = "llama.cpp"
model = "file:$W/bench.gguf"
port = $SP
autoload = true
idle_timeout = "24h"

[slots.remote]
provider = "openai-compatible"
upstream = "http://127.0.0.1:$SP/v1"
models = ["bench-remote"]
C
ulimit -n "$(ulimit -Hn)"
"$T/hal0" serve --config "$W/cfg/hal0.toml" </dev/null >/dev/null 2>"$W/hal0.log" &
HAL0_PID=$!
for i in $(seq 300); do
    curl -fsS -m 2 -H 'content-type: application/json' -d "{\"model\":\"$MODEL\",\"messages\":[]}" \
        "http://127.0.0.1:$HP/v1/chat/completions" >/dev/null 2>&1 && break
    [ "$i" -lt 300 ] || { cat "$W/hal0.log" >&2; echo "streams_rss: the slot never served" >&2; exit 1; }
    sleep 0.1
done
rss() { awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %s kB  ", $1, $2 }' "/proc/$HAL0_PID/status"; echo; }
echo "idle:             $(rss)"
if [ -n "${LOAD:-}" ]; then
    for m in ${LOAD_MODELS:-bench}; do
        BENCH_MODEL=$m wrk -t1 -c128 -d"${LOAD}s" -s "$ROOT/e2e/bench/post.lua" \
            "http://127.0.0.1:$HP/v1/chat/completions" | grep -E 'Requests/sec' | sed "s/^/$m: /"
    done
    echo "after the load:   $(rss)"
fi
mkfifo "$W/hold"
"$T/hal0-bench-upstream" hold --url "http://127.0.0.1:$HP/v1/chat/completions" --model "$MODEL" \
    --streams "$N" --interval-ms 1000 <"$W/hold" >"$W/hold.out" 2>&1 &
HOLD_PID=$!
exec 9>"$W/hold"
for _ in $(seq 1200); do grep -q '^ready' "$W/hold.out" 2>/dev/null && break; sleep 0.1; done
sleep 3 # every stream delivers a few chunks
echo "$N streams ($(head -1 "$W/hold.out")): $(rss)"
exec 9>&-
wait "$HOLD_PID" || true
HOLD_PID=""
