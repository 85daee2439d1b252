#!/usr/bin/env bash
# Installs the official `openai` Python client (PyPI) into a venv in the test cache, for the
# end-to-end tests that drive hal0 the way OpenAI clients do. Idempotent; prints
# OPENAI_PYTHON=<venv python> for `eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
HAL0_LOG_TAG=openai-client
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

exec 3>&1 1>&2  # fd 3: the KEY=VALUE lines for eval; everything else to stderr
take_lock openai-client
venv=$HAL0_CACHE/venv/openai
if ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
    log "installing the openai Python client into $venv"
    mkdir -p "$HAL0_CACHE/logs"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'openai>=1.40' >"$HAL0_CACHE/logs/openai-client.log" 2>&1 ||
        { cat "$HAL0_CACHE/logs/openai-client.log" >&2; die "pip install openai failed"; }
fi
emit OPENAI_PYTHON "$venv/bin/python"
