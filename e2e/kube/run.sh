#!/usr/bin/env bash
# hal0 on a real cluster, end to end: install with `kubectl apply -k`, apply a Slot, curl the
# gateway by model name (wakes the Slot from zero), check status, activity and owned objects,
# watch it idle back to zero, delete it and watch the cleanup.
#
#   e2e/kube/run.sh kind   # creates the kind cluster "hal0-e2e" (KEEP=1 keeps it afterwards)
#   e2e/kube/run.sh k3s    # uses the current kubectl context (a k3s node on this machine)
#
# Needs: docker, kubectl, curl, and kind or k3s. Run from anywhere; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE="${1:-kind}"
NS=hal0
PORT="${PORT:-18080}"
passed=0
failed=0

step() { printf '\n== %s\n' "$*"; }
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAILED: $*"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

# Waits up to $1 seconds for a command to succeed.
until_ok() {
  local timeout="$1"; shift
  local end=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 2
  done
}

cleanup() {
  [ -n "${PF_PID:-}" ] && kill "$PF_PID" 2>/dev/null || true
  if [ "$MODE" = kind ] && [ -z "${KEEP:-}" ]; then kind delete cluster --name hal0-e2e || true; fi
}
trap cleanup EXIT

step "image"
docker build --target e2e -t hal0:e2e .   # the root Dockerfile, plus hal0-fake-provider

step "cluster ($MODE)"
case "$MODE" in
  kind)
    kind get clusters | grep -qx hal0-e2e || kind create cluster --name hal0-e2e --wait 120s
    kubectl config use-context kind-hal0-e2e
    kind load docker-image hal0:e2e --name hal0-e2e
    ;;
  k3s)
    docker save hal0:e2e | sudo k3s ctr images import -
    ;;
  *) echo "usage: $0 kind|k3s" >&2; exit 2 ;;
esac

step "install (kubectl apply -k)"
# The first apply creates the CRD; the Slot kind is usable once it is established.
kubectl apply -k e2e/kube || true
kubectl wait --for condition=established --timeout=60s crd/slots.hal0.dev
kubectl apply -k e2e/kube
kubectl -n "$NS" rollout status deploy/hal0-controller --timeout=180s
kubectl -n "$NS" rollout status deploy/hal0-gateway --timeout=180s
ok "installed"

step "the CRD in the cluster is crds/slot.yaml"
check "CRD served" kubectl get crd slots.hal0.dev

step "apply a Slot"
kubectl apply -f e2e/kube/slot.yaml
check "Slot Ready=True" kubectl -n "$NS" wait slot/e2e-chat \
  --for=jsonpath='{.status.conditions[?(@.type=="Ready")].status}'=True --timeout=60s
check "phase stopped (scaled to zero)" kubectl -n "$NS" wait slot/e2e-chat \
  --for=jsonpath='{.status.phase}'=stopped --timeout=60s
check "Deployment owned by the Slot" bash -c \
  "kubectl -n $NS get deploy hal0-slot-e2e-chat -o jsonpath='{.metadata.ownerReferences[0].kind}' | grep -qx Slot"
check "Service exists" kubectl -n "$NS" get svc hal0-slot-e2e-chat

step "curl the gateway by model name"
kubectl -n "$NS" port-forward svc/hal0-gateway "$PORT:8080" >/tmp/hal0-e2e-pf.log 2>&1 &
PF_PID=$!
until_ok 30 curl -sf "http://127.0.0.1:$PORT/health"
check "/v1/models lists the Slot" bash -c "curl -sf http://127.0.0.1:$PORT/v1/models | grep -q e2e-chat"
code=$(curl -s -o /tmp/hal0-e2e-chat.json -w '%{http_code}' --max-time 300 \
  -H 'content-type: application/json' \
  -d '{"model":"tiny","messages":[{"role":"user","content":"hello"}]}' \
  "http://127.0.0.1:$PORT/v1/chat/completions")
check "chat by alias answers 200 (woken from zero)" test "$code" = 200
check "the wake scaled the Slot to one" bash -c \
  "test \"\$(kubectl -n $NS get slot e2e-chat -o jsonpath='{.spec.replicas}')\" = 1"
check "phase ready" kubectl -n "$NS" wait slot/e2e-chat --for=jsonpath='{.status.phase}'=ready --timeout=60s
check "lastActivity recorded" bash -c \
  "test -n \"\$(kubectl -n $NS get slot e2e-chat -o jsonpath='{.status.lastActivity}')\""
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
  -d '{"model":"no-such-model","messages":[]}' "http://127.0.0.1:$PORT/v1/chat/completions")
check "unknown model is 404" test "$code" = 404

step "idle scale-down"
kubectl -n "$NS" patch slot e2e-chat --type merge -p '{"spec":{"idle_timeout":"20s"}}'
check "scaled back to zero after idle_timeout" until_ok 180 bash -c \
  "test \"\$(kubectl -n $NS get slot e2e-chat -o jsonpath='{.spec.replicas}')\" = 0"

step "delete"
kubectl -n "$NS" delete slot e2e-chat --wait=true --timeout=60s
check "Deployment cleaned up" until_ok 60 bash -c "! kubectl -n $NS get deploy hal0-slot-e2e-chat"
check "Service cleaned up" until_ok 60 bash -c "! kubectl -n $NS get svc hal0-slot-e2e-chat"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
