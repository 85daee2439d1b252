#!/usr/bin/env bash
# How long the README's first command takes: scripts/quickstart.sh cold (nothing cached: no
# providers, no crates, no target/), then warm (everything cached), then the time from
# `hal0 serve` to the first answer of the README's curl (three runs). Figures: README.md.
# Not part of the test suite (the cold build alone takes minutes of both cores).
#
#   e2e/bench/first-run.sh          # results in e2e/bench/results/first-run-<stamp>/
#
# It runs on a snapshot of HEAD (git archive) under a temporary HOME (so ~/.cargo,
# ~/.config/hal0 and the link it may put in /usr/local/bin point there; the link is removed at
# the end) with its own HAL0_TEST_CACHE. Needs root for the first provider install, and port
# 8080 free. `uptime` is recorded before and after each step: other work on the machine makes
# the cold build slower.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d /tmp/hal0-first-run.XXXXXX)
OUT=${OUT:-$ROOT/e2e/bench/results/first-run-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT" "$WORK/src" "$WORK/home"
git -C "$ROOT" archive HEAD | tar -x -C "$WORK/src"
git -C "$ROOT" rev-parse HEAD >"$OUT/commit"

qs() { # qs NAME: one quickstart run (no serve), its log and wall time
    local t0=$SECONDS
    uptime >>"$OUT/$1.log"
    (cd "$WORK/src" && env -u CARGO_TARGET_DIR -u CARGO_HOME HOME="$WORK/home" \
        RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" PATH="$(dirname "$(command -v cargo)"):/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        HAL0_TEST_CACHE="$WORK/cache" HAL0_QUICKSTART_NO_SERVE=1 scripts/quickstart.sh) >>"$OUT/$1.log" 2>&1
    uptime >>"$OUT/$1.log"
    echo "$1: $((SECONDS - t0)) s; steps: $(grep -o 'took [0-9]*s' "$OUT/$1.log" | tr '\n' ' ')" | tee -a "$OUT/summary"
}

qs cold
qs warm

config=$WORK/home/.config/hal0/hal0.toml
for run in 1 2 3; do
    t0=$(date +%s.%N)
    HOME=$WORK/home "$WORK/home/.cargo/bin/hal0" serve --config "$config" >"$OUT/serve-$run.log" 2>&1 &
    pid=$!
    ok=0
    for _ in $(seq 1200); do # at most about 2 minutes
        if curl -sf http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
            -d '{"model":"primary","messages":[{"role":"user","content":"Say hi"}]}' >"$OUT/answer-$run.json" 2>/dev/null; then
            ok=1
            break
        fi
        sleep 0.1
    done
    t1=$(date +%s.%N)
    kill "$pid"
    wait "$pid" || true
    [ "$ok" = 1 ] || { echo "run $run: no answer" | tee -a "$OUT/summary"; continue; }
    echo "serve to first answer, run $run: $(echo "$t1 - $t0" | bc) s" | tee -a "$OUT/summary"
done

if [ "$(readlink /usr/local/bin/hal0 2>/dev/null)" = "$WORK/home/.cargo/bin/hal0" ]; then
    rm -f /usr/local/bin/hal0
fi
echo "results: $OUT (work dir $WORK, remove it when done)"
