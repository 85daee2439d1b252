#!/usr/bin/env bash
# Wake from sleep vs cold start (issue 10, part 2), with the real llama-server + SmolLM2.
# Results and analysis: BENCHMARKS.md. Not part of the test suite.
#
#   e2e/bench/sleep.sh                  # ROUNDS=5 rounds, ~1.5 min
#
# One hal0 slot with sleep_after = "2s". Each round measures, as a client sees it (a small chat
# completion, max_tokens 8):
#   cold   the slot was unloaded (POST /api/slots/primary/unload, phase stopped): process start,
#          model load, answer
#   wake   the provider fell asleep (phase sleeping, same process): wake, answer
#   warm   right after: answer only
# and the provider's resident memory awake and asleep (memory_rss in /api/slots).
#
# Knobs: ROUNDS=5, THREADS=1, HAL0_BIN (default target/release/hal0, built unless SKIP_BUILD=1),
#        OUT=<dir> (default e2e/bench/results/sleep-<stamp>)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH="$ROOT/e2e/bench"
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-1}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-"$BENCH/results/sleep-$STAMP"}
WORK=$(mktemp -d /tmp/hal0-sleep.XXXXXX)
mkdir -p "$OUT"

log() { printf '[sleep %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

eval "$("$ROOT/scripts/setup-providers.sh")"
MODEL=$(readlink -f "$SMOLLM2_GGUF")
if [ -z "${HAL0_BIN:-}" ] && [ "${SKIP_BUILD:-}" != 1 ]; then
    log "cargo build --release --bin hal0"
    (cd "$ROOT" && cargo build --release --quiet --bin hal0)
fi
HAL0=${HAL0_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/hal0"}

PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/hal0.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
port_range = [$((PORT + 1)), $((PORT + 5))]

[providers."llama.cpp"]
command = ["$LLAMA_SERVER"]

[slots.primary]
provider = "llama.cpp"
model = "file:$MODEL"
args = ["--threads", "$THREADS"]
sleep_after = "2s"
TOML
env NO_COLOR=1 "$HAL0" serve --config "$WORK/hal0.toml" </dev/null >/dev/null 2>"$WORK/hal0.log" &
PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
log "hal0 on :$PORT; $ROUNDS rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "http://127.0.0.1:$PORT" "$ROUNDS" "$OUT/results.jsonl" <<'PY'
import json, sys, time, urllib.request

base, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.status, r.read()

def status():
    return json.loads(call("GET", "/api/slots/primary")[1])

def wait(pred, what, limit=120):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        s = status()
        if pred(s):
            return s
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}: {status()}")

def chat():
    t0 = time.monotonic()
    code, _ = call("POST", "/v1/chat/completions", {
        "model": "primary", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hi"}]})
    assert code == 200, code
    return (time.monotonic() - t0) * 1000

rows = []
for i in range(rounds):
    call("POST", "/api/slots/primary/unload")
    wait(lambda s: s["phase"] == "stopped", "stopped")
    cold = chat()
    warm = chat()
    awake = wait(lambda s: s.get("memory_rss"), "an awake memory reading")["memory_rss"]
    pid = status()["pid"]
    wait(lambda s: s["phase"] == "sleeping", "sleeping")
    # The reading right after falling asleep may still be the awake one: take a fresh one.
    asleep = wait(lambda s: s["phase"] == "sleeping" and s.get("memory_rss", awake) < awake,
                  "a sleeping memory reading")["memory_rss"]
    wake = chat()
    s = status()
    assert s["pid"] == pid, "woken in the same process"
    row = {"round": i, "cold_ms": round(cold, 1), "wake_ms": round(wake, 1),
           "warm_ms": round(warm, 1), "rss_awake": awake, "rss_asleep": asleep}
    rows.append(row)
    print(json.dumps(row), file=sys.stderr)
with open(out, "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")

def med(k):
    v = sorted(r[k] for r in rows)
    return v[len(v) // 2]
print(f"| measure | median of {rounds} | min | max |")
print("|---|---|---|---|")
for k, label in [("cold_ms", "cold start + answer"), ("wake_ms", "wake from sleep + answer"),
                 ("warm_ms", "answer when awake")]:
    v = [r[k] for r in rows]
    print(f"| {label} | {med(k):.0f} ms | {min(v):.0f} ms | {max(v):.0f} ms |")
for k, label in [("rss_awake", "provider RSS awake"), ("rss_asleep", "provider RSS asleep")]:
    v = [r[k] for r in rows]
    print(f"| {label} | {med(k) / 2**20:.0f} MiB | {min(v) / 2**20:.0f} MiB | {max(v) / 2**20:.0f} MiB |")
PY
cp "$WORK/hal0.toml" "$OUT/hal0.toml"
gzip -c "$WORK/hal0.log" >"$OUT/hal0.log.gz"
