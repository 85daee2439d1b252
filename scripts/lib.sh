# shellcheck shell=bash
# Shared helpers for hal0's setup scripts. Source it; do not run it.
#
# Everything that is installed for tests lives in one cache directory outside
# the repository: ${HAL0_TEST_CACHE:-$HOME/.cache/hal0-test}.

HAL0_CACHE="${HAL0_TEST_CACHE:-$HOME/.cache/hal0-test}"

# The system tools the setup runs as root (debootstrap, chroot) live in the sbin directories,
# which a minimal PATH (cron, `env -i`, some CI runners) leaves out.
case ":$PATH:" in
*:/usr/sbin:*) ;;
*) PATH="$PATH:/usr/sbin:/sbin" ;;
esac

# log MSG...: a progress line on stderr.
log() {
    printf '[%s] %s\n' "${HAL0_LOG_TAG:-hal0}" "$*" >&2
}

# die MSG...: an error line on stderr, then exit 1.
die() {
    printf '[%s] ERROR: %s\n' "${HAL0_LOG_TAG:-hal0}" "$*" >&2
    exit 1
}

# take_lock NAME: serialise concurrent runs of the same setup step.
# Holds an exclusive flock on $HAL0_CACHE/.NAME.lock (fd 9) until the
# calling script exits.
take_lock() {
    mkdir -p "$HAL0_CACHE"
    exec 9>"$HAL0_CACHE/.$1.lock"
    if ! flock -n 9; then
        log "another setup run holds $HAL0_CACHE/.$1.lock; waiting for it"
        flock 9
    fi
}

# apt_install PKG...: install the Debian packages that are not installed yet.
# Runs `apt-get update` once per script run, and only if something is missing.
_HAL0_APT_UPDATED=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
    if [ "$_HAL0_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        _HAL0_APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# debian_mirror: the Debian archive URI this machine's apt already uses
# (so debootstrap fetches from the same place), or nothing to let
# debootstrap use its built-in default.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '
            /^[[:space:]]*#/ { next }
            /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }
            /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/ && $i ~ /\/debian\/?$/) { print $i; exit } }
        ' "$f" | head -n1
    done | head -n1
}

# quietly LOGNAME CMD...: run CMD with its output in $HAL0_CACHE/logs/LOGNAME.log,
# printing a progress line (time so far, the log's last line) every 10 s while it
# runs; on failure show the log's last lines and return CMD's status.
quietly() {
    local name=$1 logf rc=0 pid t0=$SECONDS next=$((SECONDS + 10)) last
    shift
    mkdir -p "$HAL0_CACHE/logs"
    logf=$HAL0_CACHE/logs/$name.log
    "$@" >"$logf" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$next" ]; then
            next=$((SECONDS + 10))
            # `|| true`: an empty log (a silent `go build`) makes grep fail, and with
            # pipefail + errexit that would end the calling script without a word.
            last=$(tail -c 2000 "$logf" 2>/dev/null | tr '\r' '\n' | grep -v '^[[:space:]]*$' | tail -n1 | cut -c1-90 || true)
            log "  ... $name: $((SECONDS - t0))s${last:+: $last}"
        fi
        sleep 1
    done
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "FAILED ($rc): $* -- last lines of $logf:"
        tail -n 40 "$logf" >&2
    else
        log "  $name: done in $((SECONDS - t0))s"
    fi
    return "$rc"
}

# write_exec PATH: write stdin to PATH atomically and make it executable.
write_exec() {
    local dest=$1 tmp
    mkdir -p "$(dirname "$dest")"
    tmp=$(mktemp "$dest.XXXXXX")
    cat >"$tmp"
    chmod 0755 "$tmp"
    mv -f "$tmp" "$dest"
}

# emit KEY VALUE: print a shell-evaluable KEY=VALUE line on the script's
# result fd (3, set up by the caller with `exec 3>&1 1>&2`).
emit() {
    printf '%s=%q\n' "$1" "$2" >&3
}

# wait_http URL TIMEOUT_SECONDS [PID]: poll URL until it answers 2xx.
wait_http() {
    local url=$1 timeout=$2 pid=${3:-} deadline
    deadline=$((SECONDS + timeout))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if curl -sf -o /dev/null "$url"; then
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}
