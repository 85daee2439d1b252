#!/usr/bin/env bash
# The Kubernetes scale benchmark: N Slots (default 1000) applied with kubectl to a real API
# server (hal0-testenv: etcd, kube-apiserver, controller-manager, scheduler, kwok nodes), one
# `hal0 controller` (release build) reconciling them as its ServiceAccount. Not part of the
# test suite; results in BENCHMARKS.md.
#
#   e2e/bench/kube-scale.sh                  # 1000 Slots
#   SLOTS=200 e2e/bench/kube-scale.sh        # quicker
#
# Knobs: SLOTS=1000, AUTOLOAD=true (pods run on kwok nodes; false: Slots at zero),
#        STEADY=60 (seconds of steady state, with gateway traffic to ACTIVE=100 Slots),
#        SKIP_BUILD=1 (use the existing target/release binaries), PROFILE=debug (script check
#        only: debug binaries, numbers not comparable), OUT=<dir>.
#
# Reports (stdout and $OUT/report.json):
#   - seconds from `kubectl apply` to every Slot Ready (reconciled), and to every Slot Loaded
#     (its kwok pod Running and Ready) when AUTOLOAD=true;
#   - the controller's CPU seconds and RSS (VmRSS, VmHWM) after creation and after the steady
#     state;
#   - API requests per Slot by the controller during creation (reads and writes, from the API
#     server's audit log), and its writes during the steady state (target: none), next to the
#     gateway's activity writes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SLOTS=${SLOTS:-1000}
AUTOLOAD=${AUTOLOAD:-true}
STEADY=${STEADY:-60}
ACTIVE=${ACTIVE:-100}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-"$ROOT/e2e/bench/results/kube-scale-$STAMP"}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/hal0-kube-scale.XXXXXX)
log() { printf '[kube-scale] %s\n' "$*" >&2; }

eval "$("$ROOT/scripts/setup-kube.sh")"
export HAL0_KUBE_BIN_DIR=$KUBE_BIN_DIR
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release (hal0, hal0-testenv, hal0-fake-provider)"
    (cd "$ROOT" && cargo build --release --quiet --bin hal0 --bin hal0-testenv --bin hal0-fake-provider)
fi
BIN=$ROOT/target/${PROFILE:-release}
K() { "$KUBE_BIN_DIR/kubectl" --kubeconfig "$WORK/env/kubeconfig" "$@"; }

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    exec 7>&- 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log "starting the control plane"
mkfifo "$WORK/testenv.in"
"$BIN/hal0-testenv" --dir "$WORK/env" --nodes 4 <"$WORK/testenv.in" >"$WORK/testenv.out" 2>"$WORK/testenv.err" &
pids+=($!)
exec 7>"$WORK/testenv.in"
for _ in $(seq 1 600); do grep -q '^READY' "$WORK/testenv.out" && break; sleep 0.2; done
grep -q '^READY' "$WORK/testenv.out" || { cat "$WORK/testenv.err" >&2; exit 1; }
AUDIT=$WORK/env/audit.log

K apply -k "$ROOT/crds" >/dev/null
K wait --for=condition=Established crd/slots.hal0.dev --timeout=60s >/dev/null
K apply -k "$ROOT/deploy" >/dev/null

token() { K create token "$1" -n hal0 --duration=2h; }
kubeconfig_for() {
    local sa=$1 file=$WORK/kubeconfig-$1
    sed -e "s/^    token: .*/    token: $(token "$sa")/" "$WORK/env/kubeconfig" >"$file"
    echo "$file"
}
CTL_KC=$(kubeconfig_for hal0-controller)
GW_KC=$(kubeconfig_for hal0-gateway)

log "generating $SLOTS Slots"
python3 - "$SLOTS" "$AUTOLOAD" >"$WORK/slots.yaml" <<'EOF'
import sys
n, autoload = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    print(f"""---
apiVersion: hal0.dev/v1alpha1
kind: Slot
metadata:
  name: s{i:04d}
  namespace: hal0
spec:
  provider: llama.cpp
  model: hf:org/repo/Model-{i:04d}.gguf
  memory: 1Gi
  idle_timeout: 1h
  autoload: {autoload}""")
EOF

CTL_PORT=18181
KUBECONFIG=$CTL_KC HAL0_LOG=warn "$BIN/hal0" controller --namespace hal0 --leader-elect=false \
    --health-listen "127.0.0.1:$CTL_PORT" 2>"$OUT/controller.log" &
CTL=$!
pids+=($CTL)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$CTL_PORT/readyz" >/dev/null && break; sleep 0.2; done

proc_stats() { # cpu_seconds rss_kib hwm_kib
    local ticks
    ticks=$(awk '{print $14 + $15}' "/proc/$1/stat")
    printf '%s %s %s\n' "$(python3 -c "print($ticks / $(getconf CLK_TCK))")" \
        "$(awk '/^VmRSS/ {print $2}' "/proc/$1/status")" "$(awk '/^VmHWM/ {print $2}' "/proc/$1/status")"
}
audit_mark() { wc -l <"$AUDIT"; }

A0=$(audit_mark)
log "kubectl apply of $SLOTS Slots"
T0=$(date +%s.%N)
K apply --server-side -f "$WORK/slots.yaml" >/dev/null
T_APPLIED=$(date +%s.%N)
wait_all() { # condition-type -> seconds since T0 when every Slot has it True
    local type=$1
    while :; do
        local n
        n=$(K get slots -n hal0 -o json | python3 -c "
import json, sys
items = json.load(sys.stdin)['items']
print(sum(1 for s in items if s['metadata']['name'].startswith('s') and any(
    c['type'] == '$type' and c['status'] == 'True' for c in s.get('status', {}).get('conditions', []))))")
        [ "$n" -ge "$SLOTS" ] && break
        sleep 1
    done
    python3 -c "print(round($(date +%s.%N) - $T0, 1))"
}
T_READY=$(wait_all Ready)
log "all Ready after ${T_READY}s"
T_LOADED=null
if [ "$AUTOLOAD" = true ]; then
    T_LOADED=$(wait_all Loaded)
    log "all Loaded after ${T_LOADED}s"
fi
# Let the last status writes land.
sleep 5
read -r CPU1 RSS1 HWM1 < <(proc_stats "$CTL")
A1=$(audit_mark)

log "steady state for ${STEADY}s with gateway traffic to $ACTIVE Slots"
FAKE_PORT=18182
"$BIN/hal0-fake-provider" --host 127.0.0.1 --port "$FAKE_PORT" -m /models/Model.gguf >/dev/null 2>&1 &
pids+=($!)
GW_PORT=18183
KUBECONFIG=$GW_KC HAL0_LOG=warn "$BIN/hal0" serve --source kube --namespace hal0 \
    --listen "127.0.0.1:$GW_PORT" --endpoint-override "http://127.0.0.1:$FAKE_PORT" 2>"$OUT/gateway.log" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$GW_PORT/v1/models" | grep -q s0000 && break; sleep 0.2; done
A2=$(audit_mark)
END=$(( $(date +%s) + STEADY ))
REQS=0
while [ "$(date +%s)" -lt "$END" ]; do
    for i in $(seq 0 $((ACTIVE - 1))); do
        curl -s -o /dev/null -H 'content-type: application/json' \
            -d "{\"model\":\"s$(printf %04d "$i")\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
            "http://127.0.0.1:$GW_PORT/v1/chat/completions" || true
        REQS=$((REQS + 1))
        [ "$(date +%s)" -lt "$END" ] || break
    done
done
A3=$(audit_mark)
read -r CPU2 RSS2 HWM2 < <(proc_stats "$CTL")

python3 - "$AUDIT" "$A0" "$A1" "$A2" "$A3" "$SLOTS" >"$WORK/audit.json" <<'EOF'
import json, sys
path, a0, a1, a2, a3, n = sys.argv[1], *map(int, sys.argv[2:7])
lines = open(path).read().splitlines()
def count(lo, hi, user):
    reads = writes = 0
    by = {}
    for l in lines[lo:hi]:
        e = json.loads(l)
        if e.get("stage") != "ResponseComplete" or e["user"]["username"] != user:
            continue
        verb = e["verb"]
        r = e.get("objectRef", {})
        key = f'{verb} {r.get("resource","")}{"/" + r["subresource"] if r.get("subresource") else ""}'
        by[key] = by.get(key, 0) + 1
        if verb in ("get", "list", "watch"):
            reads += 1
        else:
            writes += 1
    return {"reads": reads, "writes": writes, "by_verb": dict(sorted(by.items()))}
ctl = "system:serviceaccount:hal0:hal0-controller"
gw = "system:serviceaccount:hal0:hal0-gateway"
creation = count(a0, a1, ctl)
steady_ctl = count(a2, a3, ctl)
steady_gw = count(a2, a3, gw)
print(json.dumps({
    "creation": creation,
    "creation_per_slot": {"reads": round(creation["reads"] / n, 2), "writes": round(creation["writes"] / n, 2)},
    "steady_controller": steady_ctl,
    "steady_gateway": steady_gw,
}))
EOF

python3 - <<EOF | tee "$OUT/report.json"
import json
audit = json.load(open("$WORK/audit.json"))
print(json.dumps({
    "slots": $SLOTS, "autoload": "$AUTOLOAD" == "true",
    "kubectl_apply_seconds": round($T_APPLIED - $T0, 1),
    "all_ready_seconds": $T_READY, "all_loaded_seconds": $T_LOADED,
    "controller_after_creation": {"cpu_seconds": $CPU1, "rss_mib": round($RSS1 / 1024, 1), "peak_rss_mib": round($HWM1 / 1024, 1)},
    "controller_after_steady": {"cpu_seconds": $CPU2, "rss_mib": round($RSS2 / 1024, 1), "peak_rss_mib": round($HWM2 / 1024, 1)},
    "steady_seconds": $STEADY, "steady_requests": $REQS, "steady_active_slots": $ACTIVE,
    "api": audit,
    "hal0": "$(cd "$ROOT" && git rev-parse --short HEAD)",
    "machine": "$(nproc) cores, $(awk '/MemTotal/ {print int($2/1024/1024)}' /proc/meminfo) GiB",
}, indent=2))
EOF
log "results in $OUT"
