#!/usr/bin/env bash
# Build a real Kubernetes control plane for hal0's tests, from the Go module
# proxy only (no release binaries), pinned to one Kubernetes release:
#
#   etcd                      a wrapper module whose main calls etcdmain.Main
#   kube-apiserver            a wrapper module requiring k8s.io/kubernetes, with
#   kube-controller-manager   `replace` lines pinning every k8s.io/* staging
#   kube-scheduler            module to its v0.x tag
#   kubectl
#   hal0-devicemanager        the kubelet's device manager in a small harness
#                             (tests/deviceplugin_kubelet/devicemanager)
#   kwok                      fake nodes and pod lifecycles (go install)
#   helm                      (go install)
#
# Cache: ${HAL0_TEST_CACHE:-$HOME/.cache/hal0-test}/kube/<version>/ holds the
# binaries (bin/), the wrapper modules (src/), GOMODCACHE (gomod/) and GOCACHE
# (gocache/). Every step is skipped when its binary exists and its inputs are
# unchanged; concurrent runs are serialised with flock. Each step prints its
# time. A cold build takes 8-15 minutes on 2 cores (8 min 17 s measured from empty caches on
# an otherwise idle machine); a warm run, a second.
#
# stdout carries only shell-evaluable lines:
#   KUBE_BIN_DIR=<cache>/kube/<version>/bin
#   KUBE_VERSION=v1.36.3
# Progress goes to stderr.
set -euo pipefail

HAL0_LOG_TAG=setup-kube
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/.." && pwd)

exec 3>&1 1>&2

KUBE_VERSION=v1.36.3
STAGING_VERSION=v0.36.3
ETCD_VERSION=v3.6.8 # what k8s.io/kubernetes $KUBE_VERSION requires
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.20.2

ROOT=$HAL0_CACHE/kube/$KUBE_VERSION
BIN=$ROOT/bin
SRC=$ROOT/src
export GOMODCACHE=$ROOT/gomod GOCACHE=$ROOT/gocache GOFLAGS=-modcacherw GOTOOLCHAIN=local
export CGO_ENABLED=0 GOBIN=$BIN
# Two cores and long links: one package at a time keeps the peak memory sane
# when the machine is also running tests.
GO_P=${HAL0_GO_P:-2}

command -v go >/dev/null || die "go is not installed (Go >= 1.26 is needed to build the control plane)"
# hal0-testenv makes the control plane's certificates with the openssl command.
command -v openssl >/dev/null || apt_install openssl

take_lock setup-kube
mkdir -p "$BIN" "$SRC"

# timed NAME CMD...: run CMD, print how long it took.
timed() {
    local name=$1 t0=$SECONDS
    shift
    log "$name ..."
    "$@"
    log "$name: done in $((SECONDS - t0)) s"
}

# stamp_ok NAME KEY: is $BIN/NAME built from inputs KEY?
stamp_ok() {
    [ -x "$BIN/$1" ] && [ -f "$BIN/.$1.stamp" ] && [ "$(cat "$BIN/.$1.stamp")" = "$2" ]
}
stamp() { printf '%s' "$2" >"$BIN/.$1.stamp"; }

# ------------------------------------------------------------------- etcd
build_etcd() {
    local dir=$SRC/etcd
    mkdir -p "$dir"
    cat >"$dir/go.mod" <<EOF
module hal0.test/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
    cat >"$dir/main.go" <<'EOF'
// etcd for hal0's tests: the real etcd server, built from its module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    (cd "$dir" && quietly etcd-tidy go mod tidy && quietly etcd-build go build -p "$GO_P" -trimpath -o "$BIN/etcd" .)
}
key="etcd $ETCD_VERSION"
if stamp_ok etcd "$key"; then log "etcd $ETCD_VERSION: cached"; else
    timed "building etcd $ETCD_VERSION" build_etcd
    stamp etcd "$key"
fi

# -------------------------------------------------------------- kubernetes
# The wrapper module: k8s.io/kubernetes as a dependency. Its go.mod replaces
# every staging module with ./staging/src/..., which a dependency cannot use,
# so each one is pinned to the v0.x tag of the same release instead.
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
kube_module() {
    local dir=$SRC/kubernetes mod staging
    mkdir -p "$dir"
    quietly kube-download go mod download -json "k8s.io/kubernetes@$KUBE_VERSION"
    mod=$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/$KUBE_VERSION.mod
    staging=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$mod" | sort -u)
    [ -n "$staging" ] || die "no staging replace lines in $mod"
    {
        echo "module hal0.test/kubernetes"
        echo
        echo "go 1.26.0"
        echo
        echo "require k8s.io/kubernetes $KUBE_VERSION"
        echo
        echo "replace ("
        for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
        echo ")"
    } >"$dir/go.mod"
    # The device-manager harness lives in the repository; copy it in so it
    # builds against the same k8s.io/kubernetes.
    rm -rf "$dir/devicemanager"
    cp -r "$REPO/tests/deviceplugin_kubelet/devicemanager" "$dir/devicemanager"
    local pkgs=()
    for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$KUBE_VERSION"); done
    # tidy first (for the harness' imports), then add the commands: tidy alone would drop
    # them, since no Go file can import a main package.
    (cd "$dir" && quietly kube-get0 go get "k8s.io/kubernetes@$KUBE_VERSION" && quietly kube-tidy go mod tidy &&
        quietly kube-get go get "${pkgs[@]}")
}
build_kube() {
    local dir=$SRC/kubernetes pkgs=() ld
    for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    local minor
    minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
    ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld="$ld -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    (cd "$dir" && quietly kube-build go build -p "$GO_P" -trimpath -ldflags "$ld" -o "$BIN/" "${pkgs[@]}")
}
build_harness() {
    local dir=$SRC/kubernetes
    (cd "$dir" && quietly harness-build go build -p "$GO_P" -trimpath -o "$BIN/hal0-devicemanager" ./devicemanager)
}
harness_sum=$(cat "$REPO"/tests/deviceplugin_kubelet/devicemanager/* 2>/dev/null | sha256sum | cut -c1-16)
key="kubernetes $KUBE_VERSION staging $STAGING_VERSION"
hkey="$key harness $harness_sum"
if stamp_ok kube-apiserver "$key" && stamp_ok hal0-devicemanager "$hkey"; then
    log "kubernetes $KUBE_VERSION: cached"
else
    # The module is resolved again when the harness changed (its imports may have).
    timed "resolving k8s.io/kubernetes $KUBE_VERSION" kube_module
    if stamp_ok kube-apiserver "$key"; then
        log "kubernetes $KUBE_VERSION binaries: cached"
    else
        timed "building ${KUBE_CMDS[*]} (cold: 5-10 min)" build_kube
        for c in "${KUBE_CMDS[@]}"; do stamp "$c" "$key"; done
    fi
    timed "building hal0-devicemanager (the kubelet's device manager harness)" build_harness
    stamp hal0-devicemanager "$hkey"
fi

# -------------------------------------------------------------- kwok, helm
key="kwok $KWOK_VERSION"
if stamp_ok kwok "$key"; then log "kwok $KWOK_VERSION: cached"; else
    timed "go install kwok $KWOK_VERSION" quietly kwok-install go install -p "$GO_P" -trimpath "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    stamp kwok "$key"
fi
key="helm $HELM_VERSION"
if stamp_ok helm "$key"; then log "helm $HELM_VERSION: cached"; else
    timed "go install helm $HELM_VERSION" quietly helm-install go install -p "$GO_P" -trimpath \
        -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    stamp helm "$key"
fi

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm hal0-devicemanager; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b after the build"
done
emit KUBE_BIN_DIR "$BIN"
emit KUBE_VERSION "$KUBE_VERSION"
