#!/usr/bin/env bash
# Installs schemathesis (PyPI) into a venv in the test cache, for the test that runs it against
# hal0's /api/openapi.json (tests/api_errors.rs), and curl (Debian) for the tests that probe
# /api with it (tests/api_guard.rs). Idempotent; prints SCHEMATHESIS=<venv st> for `eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
HAL0_LOG_TAG=schemathesis
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

exec 3>&1 1>&2  # fd 3: the KEY=VALUE lines for eval; everything else to stderr
take_lock schemathesis
apt_install curl python3-venv
venv=$HAL0_CACHE/venv/schemathesis
version=4.32.5
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
    log "installing schemathesis $version into $venv"
    mkdir -p "$HAL0_CACHE/logs"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$version" >"$HAL0_CACHE/logs/schemathesis.log" 2>&1 ||
        { cat "$HAL0_CACHE/logs/schemathesis.log" >&2; die "pip install schemathesis failed"; }
fi
emit SCHEMATHESIS "$venv/bin/st"
