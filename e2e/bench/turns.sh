#!/usr/bin/env bash
# The turn-taking benchmark (issue 10, part 1): two SmolLM2 slots whose declared memory cannot
# be resident together, two clients each sending chat requests for one of them back to back.
# Results and analysis: BENCHMARKS.md. Not part of the test suite.
#
#   e2e/bench/turns.sh                 # ~4 min: three scenarios of DURATION seconds each
#   DURATION=20 e2e/bench/turns.sh     # quick look
#
# Scenarios, in one run, on the same model file and the same llama-server:
#   hal0            memory_budget 1GiB, two slots of memory = "700MiB", default min_residency
#                   and max_wait (or MIN_RESIDENCY / MAX_WAIT when set)
#   hal0-res0       the same with min_residency = "0s" on both slots
#   hal0-res<D>     the same with min_residency = "<D>" (e.g. hal0-res30s), when listed
#   router          llama.cpp's router mode: llama-server --models-dir DIR --models-max 1 with
#                   alpha.gguf and beta.gguf (the same SmolLM2 file), run chrooted in the sid
#                   tree of scripts/setup-providers.sh so that it can re-exec itself for its
#                   model instances (needs root)
# For each: answers and errors per client, p50/p99/max latency, model loads (hal0: its
# hal0_slot_loads_total; router: the instances it spawned), hal0's swaps.
#
# Knobs (environment):
#   DURATION=60          seconds per scenario
#   THREADS=1            --threads for every llama-server
#   SCENARIOS="hal0 hal0-res0 router"
#   MIN_RESIDENCY, MAX_WAIT   settings of the "hal0" scenario (default: hal0's defaults)
#   HAL0_BIN=<path>      the hal0 binary (default: target/release/hal0, built unless SKIP_BUILD=1;
#                        the gateway's cost is far below a model load, so a debug build will do)
#   OUT=<dir>            results directory (default e2e/bench/results/turns-<stamp>)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH="$ROOT/e2e/bench"
DURATION=${DURATION:-60}
THREADS=${THREADS:-1}
SCENARIOS=${SCENARIOS:-"hal0 hal0-res0 router"}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-"$BENCH/results/turns-$STAMP"}
WORK=$(mktemp -d /tmp/hal0-turns.XXXXXX)
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

log() { printf '[turns %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

eval "$("$ROOT/scripts/setup-providers.sh")"
CACHE=${HAL0_TEST_CACHE:-$HOME/.cache/hal0-test}
SID=$CACHE/sid
MODEL=$(readlink -f "$SMOLLM2_GGUF")

if [ -z "${HAL0_BIN:-}" ] && [ "${SKIP_BUILD:-}" != 1 ]; then
    log "cargo build --release --bin hal0"
    (cd "$ROOT" && cargo build --release --quiet --bin hal0)
fi
HAL0=${HAL0_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/hal0"}
[ -x "$HAL0" ] || { echo "turns: $HAL0 is missing" >&2; exit 1; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # URL PID
    for _ in $(seq 600); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

metric() { # TEXT NAME SLOT -> value or 0
    printf '%s\n' "$1" | awk -v n="$2" -v s="slot=\"$3\"" '$1 ~ "^"n"\\{" && index($1, s) { print $2; f=1 } END { if (!f) print 0 }' | head -n1
}

run_hal0() { # NAME MIN_RESIDENCY(or empty) MAX_WAIT(or empty)
    local name=$1 res=$2 wait=$3 port dir pid
    port=$(free_port)
    dir="$WORK/$name"
    mkdir -p "$dir"
    {
        echo "[server]"
        echo "listen = \"127.0.0.1:$port\""
        echo "port_range = [$((port + 1)), $((port + 20))]"
        echo "memory_budget = \"1GiB\""
        [ -n "$wait" ] && echo "max_wait = \"$wait\""
        echo
        echo "[providers.\"llama.cpp\"]"
        echo "command = [\"$LLAMA_SERVER\"]"
        for slot in alpha beta; do
            echo
            echo "[slots.$slot]"
            echo "provider = \"llama.cpp\""
            echo "model = \"file:$MODEL\""
            echo "memory = \"700MiB\""
            echo "args = [\"--threads\", \"$THREADS\"]"
            [ -n "$res" ] && echo "min_residency = \"$res\""
        done
    } >"$dir/hal0.toml"
    env NO_COLOR=1 "$HAL0" serve --config "$dir/hal0.toml" </dev/null >/dev/null 2>"$dir/hal0.log" &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/health" "$pid" || { cat "$dir/hal0.log" >&2; exit 1; }
    log "$name: hal0 on :$port (min_residency ${res:-default}, max_wait ${wait:-default}); load $(loadavg)"
    local load_before summary metrics
    load_before=$(loadavg)
    summary=$(python3 "$BENCH/turns_client.py" "http://127.0.0.1:$port" "$DURATION" "$dir/requests.jsonl" alpha beta)
    metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
    printf '%s\n' "$metrics" >"$dir/metrics.txt"
    local la lb sa sb ls lc
    ls=$(printf '%s\n' "$metrics" | awk '$1 ~ /^hal0_slot_load_duration_seconds_sum/ { s += $2 } END { print s + 0 }')
    lc=$(printf '%s\n' "$metrics" | awk '$1 ~ /^hal0_slot_load_duration_seconds_count/ { s += $2 } END { print s + 0 }')
    la=$(metric "$metrics" hal0_slot_loads_total alpha)
    lb=$(metric "$metrics" hal0_slot_loads_total beta)
    sa=$(metric "$metrics" hal0_slot_swaps_total alpha)
    sb=$(metric "$metrics" hal0_slot_swaps_total beta)
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    cp "$dir/hal0.toml" "$dir/hal0.log" "$dir/metrics.txt" "$OUT/" 2>/dev/null || true
    mv "$OUT/hal0.toml" "$OUT/$name.hal0.toml"
    mv "$OUT/hal0.log" "$OUT/$name.hal0.log"
    mv "$OUT/metrics.txt" "$OUT/$name.metrics.txt"
    cp "$dir/requests.jsonl" "$OUT/$name.requests.jsonl"
    printf '{"scenario":"%s","min_residency":"%s","max_wait":"%s","loads":%d,"swaps":%d,"load_s_sum":%s,"load_count":%s,"summary":%s,"load_before":"%s","load_after":"%s"}\n' \
        "$name" "${res:-default}" "${wait:-default}" $((la + lb)) $((sa + sb)) "$ls" "$lc" "$summary" "$load_before" "$(loadavg)" >>"$RESULTS"
    log "$name: loads $((la + lb)), swaps $((sa + sb)): $summary"
}

run_router() {
    [ "$(id -u)" -eq 0 ] || { echo "turns: the router scenario needs root (chroot)" >&2; exit 1; }
    local port dir models pid log_file
    port=$(free_port)
    dir="$SID/tmp/hal0-turns-$STAMP"
    models="$dir/models"
    mkdir -p "$models"
    ln -f "$MODEL" "$models/alpha.gguf" 2>/dev/null || cp "$MODEL" "$models/alpha.gguf"
    ln -f "$MODEL" "$models/beta.gguf" 2>/dev/null || cp "$MODEL" "$models/beta.gguf"
    log_file="$WORK/router.log"
    # A private mount namespace with /proc mounted in the tree: the router re-executes
    # /proc/self/exe for each model instance.
    unshare -m --propagation private sh -c \
        "mount -t proc proc '$SID/proc' && exec chroot '$SID' /usr/bin/llama-server \
            --models-dir '/tmp/hal0-turns-$STAMP/models' --models-max 1 \
            --host 127.0.0.1 --port $port --threads $THREADS" \
        </dev/null >"$log_file" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/health" "$pid" || { cat "$log_file" >&2; exit 1; }
    log "router: llama-server --models-max 1 on :$port; load $(loadavg)"
    local load_before summary loads
    load_before=$(loadavg)
    summary=$(python3 "$BENCH/turns_client.py" "http://127.0.0.1:$port" "$DURATION" "$WORK/router.requests.jsonl" alpha beta)
    loads=$(grep -c 'spawning server instance with name=' "$log_file" || true)
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    cp "$log_file" "$OUT/router.log"
    cp "$WORK/router.requests.jsonl" "$OUT/router.requests.jsonl"
    printf '{"scenario":"router","loads":%d,"summary":%s,"load_before":"%s","load_after":"%s"}\n' \
        "$loads" "$summary" "$load_before" "$(loadavg)" >>"$RESULTS"
    log "router: loads $loads: $summary"
}

log "llama-server: $("$LLAMA_SERVER" --version 2>&1 | head -n1); model $MODEL; $DURATION s per scenario"
printf '{"kind":"meta","duration_s":%s,"threads":%s,"git":"%s","dirty":%s,"hal0":"%s","llama_server":"%s","nproc":%s}\n' \
    "$DURATION" "$THREADS" "$(git -C "$ROOT" rev-parse --short HEAD)" \
    "$(git -C "$ROOT" status --porcelain -- src Cargo.toml | wc -l)" "$HAL0" \
    "$("$LLAMA_SERVER" --version 2>&1 | head -n1)" "$(nproc)" >>"$RESULTS"
for s in $SCENARIOS; do
    case $s in
    hal0) run_hal0 hal0 "${MIN_RESIDENCY:-}" "${MAX_WAIT:-}" ;;
    hal0-res0) run_hal0 hal0-res0 0s "${MAX_WAIT:-}" ;;
    hal0-res*) run_hal0 "$s" "${s#hal0-res}" "${MAX_WAIT:-}" ;;
    router) run_router ;;
    *) echo "turns: unknown scenario $s" >&2; exit 1 ;;
    esac
done
python3 "$BENCH/turns_report.py" "$RESULTS" | tee "$OUT/report.md"
