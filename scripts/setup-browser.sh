#!/usr/bin/env bash
# Installs what the dashboard's browser test needs, idempotently and quickly once done:
#   - Debian's chromium (/usr/bin/chromium), driven headless;
#   - playwright-core (no browser download) into e2e/dashboard/node_modules, from the
#     committed package-lock.json.
# Prints `HAL0_CHROMIUM=/usr/bin/chromium` on stdout for `eval`; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "setup-browser: installing chromium (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup-browser: installing nodejs and npm (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends nodejs npm >&2
fi

dir=e2e/dashboard
stamp=$dir/node_modules/.hal0-lock.sha
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$dir/node_modules/playwright-core" ]; then
    echo "setup-browser: npm ci in $dir" >&2
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$stamp"
fi

echo "HAL0_CHROMIUM=$(command -v chromium)"
