#!/usr/bin/env bash
# hal0 quickstart: a user's first command.
#
# Installs llama-server and a tiny chat model (SmolLM2-135M, ~98 MB) into
# ${HAL0_TEST_CACHE:-$HOME/.cache/hal0-test} (needs root the first time: apt,
# debootstrap), writes <cache>/quickstart.toml with one autoloaded chat slot,
# and runs `hal0 serve` on it. Extra arguments are passed to `hal0 serve`.
#
# Then, from another terminal:
#   curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
#     -d '{"model":"primary","messages":[{"role":"user","content":"Say hi"}]}'
set -euo pipefail
cd "$(dirname "$0")/.."

HAL0_LOG_TAG=quickstart
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

log "installing providers (first run takes about a minute)"
vars=$(scripts/setup-providers.sh)
eval "$vars"

config=$HAL0_CACHE/quickstart.toml
toml_str() { # a TOML basic string
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}
cat >"$config.tmp" <<EOF
# Written by scripts/quickstart.sh.
[providers."llama.cpp"]
command = [$(toml_str "$LLAMA_SERVER"), "-t", "1"]

[slots.primary]
provider = "llama.cpp"
model = $(toml_str "file:$SMOLLM2_GGUF")
autoload = true
EOF
mv -f "$config.tmp" "$config"
log "config: $config"
log "starting: cargo run --release -- serve --config $config $*"
exec cargo run --release -- serve --config "$config" "$@"
