#!/usr/bin/env bash
# The gateway benchmark: direct vs nginx vs hal0 against the same fast local upstream, through
# hal0 both as a local slot (`hal0`) and as an `openai-compatible` upstream slot (`hal0-up`).
# Results and analysis: BENCHMARKS.md. Not part of the test suite.
#
#   e2e/bench/run.sh                 # full run (~8 min), results in e2e/bench/results/<stamp>/
#   DURATION=5 ROUNDS=1 e2e/bench/run.sh    # quick look
#
# Knobs (environment):
#   DURATION=10        seconds per wrk run
#   ROUNDS=3           rounds; each round runs every (concurrency, target) pair, interleaved,
#                      and the report takes the median over rounds
#   CONCURRENCIES="1 16 128"
#   SSE_CHUNKS=50 SSE_INTERVAL_MS=10   the streamed response: chunks and their spacing
#   HOLD_STREAMS=1000  open streams for the RSS measurement
#   SKIP_BUILD=1       use the existing release binaries (in $CARGO_TARGET_DIR, default target/)
#   HAL0_BIN=<path>    benchmark this hal0 binary instead (e.g. a patched build); implies no
#                      build of hal0 (the upstream is still built unless SKIP_BUILD=1)
#   HAL0_ENV="K=V ..." extra environment for hal0 (e.g. TOKIO_WORKER_THREADS=1)
#   HAL0_SERVER="..."  extra lines for hal0.toml's [server] table (e.g. "workers = 1")
#   OUT=<dir>          results directory
#   PROFILE=0          skip the CPU profile (default: when `perf` is installed, hal0 and nginx
#                      are each sampled with `perf record` for 10 s of wrk -c128 after the
#                      rounds; perf-hal0.txt and perf-nginx.txt: self time by DSO and symbol)
#
# What it does: installs nginx and wrk with apt if they are missing; builds hal0 and
# hal0-bench-upstream (release); starts hal0 with two slots: `bench`, whose provider command is
# the bench upstream (pinned port), and `remote`, an `openai-compatible` slot whose `upstream` is
# that same process (plain HTTP on 127.0.0.1: it takes the gateway's upstream path, the client
# that would speak TLS to an https:// upstream, without a TLS terminator's cost in the
# comparison); starts nginx proxying to that same upstream process; then measures
#   - wrk (1 thread, POST of a small chat request, keep-alive) at each concurrency, per target;
#   - per-chunk transit time of SSE streams (upstream send stamp -> client receive), per target;
#   - hal0's VmRSS idle, after the load, and with HOLD_STREAMS open streams (nginx's too).
# `uptime` load averages are recorded before every measurement.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH="$ROOT/e2e/bench"
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONCURRENCIES=${CONCURRENCIES:-"1 16 128"}
SSE_CHUNKS=${SSE_CHUNKS:-50}
SSE_INTERVAL_MS=${SSE_INTERVAL_MS:-10}
HOLD_STREAMS=${HOLD_STREAMS:-1000}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-"$BENCH/results/$STAMP"}
WORK=$(mktemp -d /tmp/hal0-bench.XXXXXX)
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
record() { printf '%s\n' "$1" >>"$RESULTS"; }

# --- tools ------------------------------------------------------------------------------------
need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing ${need_apt[*]} with apt"
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >"$WORK/apt.log" 2>&1; then
        $SUDO apt-get update -qq >>"$WORK/apt.log" 2>&1
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >>"$WORK/apt.log" 2>&1 \
            || { cat "$WORK/apt.log" >&2; exit 1; }
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in wrk curl python3; do
    command -v "$t" >/dev/null 2>&1 || { echo "bench: $t is required" >&2; exit 1; }
done

if [ "${SKIP_BUILD:-}" != 1 ]; then
    log "cargo build --release (hal0, hal0-bench-upstream)"
    bins=(--bin hal0-bench-upstream)
    [ -n "${HAL0_BIN:-}" ] || bins+=(--bin hal0)
    (cd "$ROOT" && cargo build --release --quiet "${bins[@]}")
fi
TARGET_DIR=${CARGO_TARGET_DIR:-"$ROOT/target"}
HAL0=${HAL0_BIN:-"$TARGET_DIR/release/hal0"}
UP=${UPSTREAM_BIN:-"$TARGET_DIR/release/hal0-bench-upstream"}
[ -x "$HAL0" ] && [ -x "$UP" ] || { echo "bench: release binaries missing" >&2; exit 1; }

# 1000 streams through a proxy need ~2000 descriptors in it and 1000 in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((HOLD_STREAMS * 2 + 256)) ] \
    || { echo "bench: ulimit -n $(ulimit -n) is too low for $HOLD_STREAMS streams" >&2; exit 1; }

# --- processes --------------------------------------------------------------------------------
HAL0_PID="" HOLD_PID=""
cleanup() {
    set +e
    [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null
    [ -f "$WORK/nginx.pid" ] && kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null
    if [ -n "$HAL0_PID" ] && kill -0 "$HAL0_PID" 2>/dev/null; then
        kill -TERM "$HAL0_PID"
        for _ in $(seq 100); do kill -0 "$HAL0_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$HAL0_PID" 2>/dev/null
    fi
    cp "$WORK"/hal0.log "$WORK"/nginx-error.log "$WORK"/cfg/hal0.toml "$WORK"/nginx.conf "$OUT/" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # N consecutive-free ports, printed one per line
    python3 - "$1" <<'EOF'
import socket, sys
n = int(sys.argv[1]); got = []; socks = []
while len(got) < n:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s); got.append(s.getsockname()[1])
print("\n".join(map(str, got)))
EOF
}
mapfile -t PORTS < <(free_ports 3)
HAL0_PORT=${PORTS[0]} NGINX_PORT=${PORTS[1]} SLOT_PORT=${PORTS[2]}

# The config gets a directory of its own: hal0 watches it, and the harness writes files.
mkdir -p "$WORK/cfg"
touch "$WORK/bench.gguf"
cat >"$WORK/cfg/hal0.toml" <<EOF
[server]
listen = "127.0.0.1:$HAL0_PORT"
port_range = [$SLOT_PORT, $SLOT_PORT]
state_dir = "$WORK/state"
models_dir = "$WORK/models"
stop_grace = "3s"
${HAL0_SERVER:-}

[providers."llama.cpp"]
command = ["$UP", "serve"]

[slots.bench]
provider = "llama.cpp"
model = "file:$WORK/bench.gguf"
port = $SLOT_PORT
autoload = true
idle_timeout = "24h"

[slots.remote]
provider = "openai-compatible"
upstream = "http://127.0.0.1:$SLOT_PORT/v1"
models = ["bench-remote"]
EOF

log "starting hal0 on :$HAL0_PORT (slot on :$SLOT_PORT)"
# shellcheck disable=SC2086 # HAL0_ENV is a list of K=V words
env NO_COLOR=1 ${HAL0_ENV:-} "$HAL0" serve --config "$WORK/cfg/hal0.toml" </dev/null >/dev/null 2>"$WORK/hal0.log" &
HAL0_PID=$!
CHAT='{"model":"bench","messages":[{"role":"user","content":"Say ok."}]}'
for i in $(seq 300); do
    if curl -fsS -m 2 -H 'content-type: application/json' -d "$CHAT" \
        "http://127.0.0.1:$HAL0_PORT/v1/chat/completions" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$HAL0_PID" 2>/dev/null || { cat "$WORK/hal0.log" >&2; echo "bench: hal0 exited" >&2; exit 1; }
    [ "$i" -lt 300 ] || { cat "$WORK/hal0.log" >&2; echo "bench: slot never served" >&2; exit 1; }
    sleep 0.1
done
UP_PID=$(ss -ltnpH "sport = :$SLOT_PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
curl -fsS -m 5 -H 'content-type: application/json' -d '{"model":"bench-remote","messages":[]}' \
    "http://127.0.0.1:$HAL0_PORT/v1/chat/completions" >/dev/null \
    || { cat "$WORK/hal0.log" >&2; echo "bench: the openai-compatible slot does not answer" >&2; exit 1; }

sed -e "s#@DIR@#$WORK#g" -e "s#@SLOT_PORT@#$SLOT_PORT#g" -e "s#@NGINX_PORT@#$NGINX_PORT#g" \
    "$BENCH/nginx.conf.in" >"$WORK/nginx.conf"
mkdir -p "$WORK"/{client_body,proxy,fastcgi,uwsgi,scgi}
log "starting nginx on :$NGINX_PORT"
# In the foreground of a background job, like hal0: a daemonizing nginx calls setsid(), and a
# new session is a scheduling group of its own (autogroup), which would give nginx's workers
# half the CPUs against wrk, the upstream and everything else together whenever they contend,
# while hal0 shares one group with them. Same session, same treatment.
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" -g 'daemon off;' </dev/null &
for _ in $(seq 50); do
    curl -fsS -m 2 -H 'content-type: application/json' -d "$CHAT" \
        "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" >/dev/null 2>&1 && break
    sleep 0.1
done

declare -A URL=(
    [direct]="http://127.0.0.1:$SLOT_PORT"
    [nginx]="http://127.0.0.1:$NGINX_PORT"
    [hal0]="http://127.0.0.1:$HAL0_PORT"
    [hal0-up]="http://127.0.0.1:$HAL0_PORT"
)
# The model each target's requests name: hal0-up is hal0's openai-compatible slot (a model of
# its own, sent on unchanged).
declare -A MODEL=([direct]=bench [nginx]=bench [hal0]=bench [hal0-up]=bench-remote)
TARGETS="direct nginx hal0 hal0-up"
CHAT_PATH=/v1/chat/completions

rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
nginx_rss_kb() { # master + workers
    local total=0 p
    for p in $(cat "$WORK/nginx.pid") $(pgrep -P "$(cat "$WORK/nginx.pid")"); do
        total=$((total + $(rss_kb "$p" VmRSS)))
    done
    echo "$total"
}
rss_record() { # phase
    record "{\"kind\":\"rss\",\"phase\":\"$1\",\"hal0_rss_kb\":$(rss_kb "$HAL0_PID" VmRSS),\"hal0_hwm_kb\":$(rss_kb "$HAL0_PID" VmHWM),\"hal0_anon_kb\":$(rss_kb "$HAL0_PID" RssAnon),\"hal0_file_kb\":$(rss_kb "$HAL0_PID" RssFile),\"hal0_threads\":$(rss_kb "$HAL0_PID" Threads),\"nginx_rss_kb\":$(nginx_rss_kb),\"upstream_rss_kb\":$(rss_kb "$UP_PID" VmRSS),\"load\":\"$(loadavg)\"}"
}

# --- machine ----------------------------------------------------------------------------------
# Which scheduling group (autogroup: one per session) each party runs in; the comparison is
# only fair when the proxies share theirs with the same neighbours.
sched_groups() {
    local p who out=""
    for who in "bench:$$" "hal0:$HAL0_PID" "upstream:$UP_PID" "nginx:$(cat "$WORK/nginx.pid")"; do
        p=${who#*:}
        out+="${who%%:*} $(awk '{print $1}' "/proc/$p/autogroup" 2>/dev/null || echo none); "
    done
    echo "${out%; }"
}
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD)
GIT_DIRTY=$(git -C "$ROOT" status --porcelain -- src Cargo.toml | wc -l)
record "$(python3 - "$DURATION" "$ROUNDS" "$SSE_CHUNKS" "$SSE_INTERVAL_MS" "$HOLD_STREAMS" "$GIT_REV" "$GIT_DIRTY" "$($NGINX -v 2>&1)" "$(wrk -v 2>&1 | head -1)" "${HAL0_BIN:-}" "${HAL0_ENV:-}" "${HAL0_SERVER:-}" "$(sched_groups)" <<'EOF'
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
a = sys.argv[1:]
print(json.dumps({"kind": "machine", "cpus": os.cpu_count(), "cpu": cpu, "mem_mib": mem,
    "kernel": platform.release(), "duration_s": int(a[0]), "rounds": int(a[1]),
    "sse_chunks": int(a[2]), "sse_interval_ms": int(a[3]), "hold_streams": int(a[4]),
    "git": a[5], "dirty_src_files": int(a[6]), "nginx": a[7], "wrk": a[8], "hal0_bin": a[9], "hal0_env": a[10], "hal0_server": a[11], "sched_groups": a[12],
    "load_at_start": open("/proc/loadavg").read().split()[:3]}))
EOF
)"

sleep 2
rss_record idle
log "hal0 pid $HAL0_PID idle VmRSS $(rss_kb "$HAL0_PID" VmRSS) kB; load $(loadavg)"

# --- warm-up ----------------------------------------------------------------------------------
for t in $TARGETS; do
    BENCH_MODEL=${MODEL[$t]} wrk -t1 -c16 -d2s -s "$BENCH/post.lua" "${URL[$t]}$CHAT_PATH" >/dev/null
done

# --- rounds -----------------------------------------------------------------------------------
cpu_ticks() { # utime+stime of the given pids (and their threads), in clock ticks
    local total=0 p
    for p in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$total"
}
sched() { # of the given pids' threads: "run-queue-wait-ns preemptions sleeps"
    local p wait=0 pre=0 vol=0 w n v
    for p in "$@"; do
        w=$(cat /proc/"$p"/task/*/schedstat 2>/dev/null | awk '{s += $2} END {printf "%.0f\n", s}')
        n=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '$1 == "nonvoluntary_ctxt_switches:" {s += $2} END {printf "%.0f\n", s}')
        v=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '$1 == "voluntary_ctxt_switches:" {s += $2} END {printf "%.0f\n", s}')
        wait=$((wait + w)) pre=$((pre + n)) vol=$((vol + v))
    done
    echo "$wait $pre $vol"
}
sched_json() { # before-sample after-sample → {"wait_ns":…,"preempted":…,"slept":…}
    local a=($1) b=($2)
    echo "{\"wait_ns\":$((b[0] - a[0])),\"preempted\":$((b[1] - a[1])),\"slept\":$((b[2] - a[2]))}"
}
NGINX_PIDS() { echo "$(cat "$WORK/nginx.pid") $(pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ')"; }
run_wrk() { # round target concurrency
    local load out line h0 n0 u0
    load=$(loadavg)
    h0=$(cpu_ticks "$HAL0_PID") n0=$(cpu_ticks $(NGINX_PIDS)) u0=$(cpu_ticks "$UP_PID")
    local hs0 ns0 us0
    hs0=$(sched "$HAL0_PID") ns0=$(sched $(NGINX_PIDS)) us0=$(sched "$UP_PID")
    out=$(BENCH_MODEL=${MODEL[$2]} wrk -t1 -c"$3" -d"${DURATION}s" --timeout 10s -s "$BENCH/post.lua" "${URL[$2]}$CHAT_PATH")
    line=$(grep '^WRKJSON ' <<<"$out" | sed 's/^WRKJSON //')
    local hal0_ticks=$(( $(cpu_ticks "$HAL0_PID") - h0 ))
    local cpu="{\"hal0\":$hal0_ticks,\"hal0-up\":$hal0_ticks,\"nginx\":$(( $(cpu_ticks $(NGINX_PIDS)) - n0 )),\"upstream\":$(( $(cpu_ticks "$UP_PID") - u0 )),\"hz\":$(getconf CLK_TCK)}"
    local sch="{\"hal0\":$(sched_json "$hs0" "$(sched "$HAL0_PID")"),\"nginx\":$(sched_json "$ns0" "$(sched $(NGINX_PIDS))"),\"upstream\":$(sched_json "$us0" "$(sched "$UP_PID")")}"
    record "{\"kind\":\"wrk\",\"round\":$1,\"target\":\"$2\",\"c\":$3,\"load\":\"$load\",\"load_after\":\"$(loadavg)\",\"cpu_ticks\":$cpu,\"sched\":$sch,\"r\":$line}"
    log "round $1 wrk  c=$3 $2: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.0f req/s p50 %dus p99 %dus non2xx %d" % (r["requests"]/r["duration_us"]*1e6, r["p50_us"], r["p99_us"], r["non2xx"]))' "$line") (load $load)"
}
run_sse() { # round target concurrency
    local load line requests
    requests=$(( (20 + $3 - 1) / $3 ))
    [ "$requests" -ge 2 ] || requests=2
    load=$(loadavg)
    line=$("$UP" sse --url "${URL[$2]}$CHAT_PATH" --model "${MODEL[$2]}" --concurrency "$3" --requests "$requests" \
        --chunks "$SSE_CHUNKS" --interval-ms "$SSE_INTERVAL_MS")
    record "{\"kind\":\"sse\",\"round\":$1,\"target\":\"$2\",\"c\":$3,\"load\":\"$load\",\"load_after\":\"$(loadavg)\",\"r\":$line}"
    log "round $1 sse  c=$3 $2: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); t=r["transit_us"]; print("transit p50 %.0fus p99 %.0fus errors %d" % (t["p50"], t["p99"], r["errors"]))' "$line") (load $load)"
}
for round in $(seq "$ROUNDS"); do
    for c in $CONCURRENCIES; do
        for t in $TARGETS; do run_wrk "$round" "$t" "$c"; done
        for t in $TARGETS; do run_sse "$round" "$t" "$c"; done
    done
done
rss_record after_load

# --- CPU profile -----------------------------------------------------------------------------
profile() { # target pids...
    local t=$1 pids
    shift
    pids=$(echo "$@" | tr ' ' ',')
    BENCH_MODEL=${MODEL[$t]} wrk -t1 -c128 -d14s -s "$BENCH/post.lua" "${URL[$t]}$CHAT_PATH" >/dev/null &
    local wrk_pid=$!
    sleep 2
    perf record -q -F 1999 -p "$pids" -o "$WORK/perf.$t.data" -- sleep 10 >/dev/null 2>&1 || true
    wait "$wrk_pid" || true
    perf report -i "$WORK/perf.$t.data" --stdio --no-children --sort dso,symbol --percent-limit 0.3 \
        2>/dev/null | grep -v '^$' >"$OUT/perf-$t.txt" || true
    log "profile of $t: $OUT/perf-$t.txt"
}
if [ "${PROFILE:-1}" = 1 ] && command -v perf >/dev/null 2>&1; then
    profile hal0 "$HAL0_PID"
    profile hal0-up "$HAL0_PID"
    profile nginx $(pgrep -P "$(cat "$WORK/nginx.pid")")
fi

# --- open streams -----------------------------------------------------------------------------
hold_streams() { # target
    local fifo="$WORK/hold.$1" ready
    mkfifo "$fifo"
    "$UP" hold --url "${URL[$1]}$CHAT_PATH" --model "${MODEL[$1]}" --streams "$HOLD_STREAMS" --interval-ms 1000 \
        <"$fifo" >"$WORK/hold.$1.out" 2>"$WORK/hold.$1.err" &
    HOLD_PID=$!
    exec 9>"$fifo"
    for _ in $(seq 1200); do
        grep -q '^ready' "$WORK/hold.$1.out" 2>/dev/null && break
        sleep 0.1
    done
    sleep 3 # let every stream deliver a few chunks
    ready=$(head -1 "$WORK/hold.$1.out")
    if [ "$1" != nginx ]; then
        log "$HOLD_STREAMS streams via hal0: $ready; hal0 VmRSS $(rss_kb "$HAL0_PID" VmRSS) kB"
    else
        log "$HOLD_STREAMS streams via $1: $ready; nginx RSS $(nginx_rss_kb) kB"
    fi
    rss_record "streams_$1"
    sed -i "\$s/}\$/,\"held\":\"$ready\"}/" "$RESULTS"
    exec 9>&-
    wait "$HOLD_PID" || true
    HOLD_PID=""
    rm -f "$fifo"
    sleep 2
}
hold_streams hal0
rss_record after_streams
hold_streams hal0-up
rss_record after_streams_up
hold_streams nginx

# --- report -----------------------------------------------------------------------------------
python3 "$BENCH/report.py" "$RESULTS" >"$OUT/summary.md"
cat "$OUT/summary.md"
log "results: $OUT (results.jsonl, summary.md, hal0.log)"
