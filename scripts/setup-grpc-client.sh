#!/usr/bin/env bash
# Installs Python's grpcio (gRPC C-core) and grpcio-tools (protoc) from PyPI into a venv in
# the test cache, for the test that dials `hal0 device-plugin`'s socket the way C-core
# clients do (`unix:PATH`, their own default :authority). The test compiles proto/ with
# grpcio-tools into a temp dir; nothing generated is kept. Idempotent; prints
# GRPC_PYTHON=<venv python> for `eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
HAL0_LOG_TAG=grpc-client
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

exec 3>&1 1>&2 # fd 3: the KEY=VALUE lines for eval; everything else to stderr
take_lock grpc-client
venv=$HAL0_CACHE/venv/grpc
if ! "$venv/bin/python" -c 'import grpc, grpc_tools.protoc' 2>/dev/null; then
    log "installing grpcio and grpcio-tools into $venv"
    mkdir -p "$HAL0_CACHE/logs"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'grpcio>=1.60' 'grpcio-tools>=1.60' >"$HAL0_CACHE/logs/grpc-client.log" 2>&1 ||
        { cat "$HAL0_CACHE/logs/grpc-client.log" >&2; die "pip install grpcio grpcio-tools failed"; }
fi
emit GRPC_PYTHON "$venv/bin/python"
