#!/usr/bin/env bash
# hal0 quickstart: a user's first command. Four steps, each saying how long it took:
#
#   1. llama-server and a tiny chat model (SmolLM2-135M, ~98 MB) into
#      ${HAL0_TEST_CACHE:-$HOME/.cache/hal0-test} (scripts/setup-providers.sh; root the first
#      time, for apt and debootstrap): 1-2 minutes the first time, a second after;
#   2. hal0 itself, built and installed as ~/.cargo/bin/hal0 (`cargo install --path .`, built in
#      ./target): about 11 minutes on 2 cores the first time (README.md), seconds after; if that directory is
#      not on PATH, a link in /usr/local/bin (root) or ~/.local/bin;
#   3. your config, ${XDG_CONFIG_HOME:-~/.config}/hal0/hal0.toml (or $HAL0_CONFIG), created with
#      one autoloaded chat slot ONLY IF IT DOES NOT EXIST: slots you add later stay;
#   4. `hal0 serve` on it (extra arguments are passed to it), in the foreground.
#
# Then, from another terminal:
#   curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
#     -d '{"model":"primary","messages":[{"role":"user","content":"Say hi"}]}'
#   hal0 slot list
#
# Env: HAL0_QUICKSTART_NO_SERVE=1 stops after step 3 (for scripts and tests);
#      HAL0_QUICKSTART_BIN=/path/to/hal0 skips step 2 and uses that binary (tests).
set -euo pipefail
cd "$(dirname "$0")/.."

HAL0_LOG_TAG=quickstart
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

took() { log "    took $((SECONDS - $1))s"; }

t=$SECONDS
log "1/4 providers: llama-server + SmolLM2 (first run: about a minute, with progress lines; then cached)"
vars=$(scripts/setup-providers.sh)
eval "$vars"
took "$t"

t=$SECONDS
cargo_home=${CARGO_HOME:-$HOME/.cargo}
if [ -n "${HAL0_QUICKSTART_BIN:-}" ]; then
    hal0_bin=$HAL0_QUICKSTART_BIN
    log "2/4 hal0: using $hal0_bin (HAL0_QUICKSTART_BIN)"
else
    log "2/4 hal0: cargo install --path . --bin hal0 (first run: a release build, about 11 min on 2 cores; then seconds)"
    # Built in ./target so later runs are incremental; installed as $cargo_home/bin/hal0.
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} \
        cargo install --locked --force --path . --bin hal0
    hal0_bin=$cargo_home/bin/hal0
    [ -x "$hal0_bin" ] || die "cargo install did not produce $hal0_bin"
    on_path=$(command -v hal0 || true)
    if [ "$on_path" != "$hal0_bin" ]; then
        # $cargo_home/bin is not on PATH (or another hal0 comes first): link it where PATH looks.
        case ":$PATH:" in
        *:/usr/local/bin:*) if [ -w /usr/local/bin ]; then link=/usr/local/bin/hal0; fi ;;
        esac
        if [ -z "${link:-}" ]; then
            link=$HOME/.local/bin/hal0
            mkdir -p "$HOME/.local/bin"
        fi
        ln -sfn "$hal0_bin" "$link"
        log "    linked $link -> $hal0_bin"
        case ":$PATH:" in
        *":$(dirname "$link"):"*) ;;
        *) log "    NOTE: $(dirname "$link") is not on your PATH; add it: export PATH=\"$(dirname "$link"):\$PATH\"" ;;
        esac
    fi
    log "    hal0 is $(command -v hal0 || echo "$hal0_bin") ($("$hal0_bin" --version))"
fi
took "$t"

config=${HAL0_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/hal0/hal0.toml}
toml_str() { # a TOML basic string
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}
if [ -e "$config" ]; then
    log "3/4 config: $config exists; using it as it is (never rewritten: delete it to start over)"
else
    log "3/4 config: creating $config with one chat slot (primary: SmolLM2 on llama-server)"
    mkdir -p "$(dirname "$config")"
    cat >"$config.tmp" <<EOF
# Your hal0 config, created once by scripts/quickstart.sh (it never rewrites it).
# hal0 watches this file: edits apply live. \`hal0 slot add|edit|remove\`, the API and the
# dashboard edit it too, keeping your comments. Every setting: hal0.example.toml in the
# repository; custom slots: docs/slots.md.

[server]
listen = "127.0.0.1:8080"

[providers."llama.cpp"]
command = [$(toml_str "$LLAMA_SERVER"), "-t", "1"]

[slots.primary]
provider = "llama.cpp"
model = $(toml_str "file:$SMOLLM2_GGUF")
autoload = true
EOF
    mv -n "$config.tmp" "$config"
    rm -f "$config.tmp"
fi
"$hal0_bin" config validate --config "$config" >&2

if [ "${HAL0_QUICKSTART_NO_SERVE:-0}" = 1 ]; then
    log "HAL0_QUICKSTART_NO_SERVE=1: not starting hal0"
    exit 0
fi
log "4/4 starting: hal0 serve --config $config $*"
log "    the chat slot is ready a few seconds after; then, in another terminal: hal0 slot list"
log "    the dashboard: http://127.0.0.1:8080/"
exec "$hal0_bin" serve --config "$config" "$@"
