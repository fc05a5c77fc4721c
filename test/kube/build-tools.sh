#!/usr/bin/env bash
# Builds (once; cached) what the real-cluster harness needs that no Debian package has:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl v1.34.3
#     from the Go module proxy through the wrapper module in tools/ (go.mod + go.sum committed);
#   coredns (go install from the module proxy);
#   pause, Kubernetes' own pause.c (from the k8s.io/kubernetes module) compiled statically.
# Output: $KUBE_TOOLS/bin. Each output has a stamp of its inputs (go version, go.sum, flags) next to it and is
# rebuilt only when they change; the Go build cache (~5 GB) makes a rebuild after a change cheap.
# Builds run under `nice -n 10`: the machine's 2 cores are shared.
# `--apiserver-only` builds kube-apiserver alone (scripts/test: the EndpointSlice tests need no cluster); a later full
# run reuses it (same stamp).
set -euo pipefail
apiserver_only=0
if [ "${1:-}" = "--apiserver-only" ]; then apiserver_only=1; fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

mkdir -p "$KUBE_TOOLS/bin"
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0

# stamp NAME INPUTS...: succeeds when $KUBE_TOOLS/bin/NAME exists and was built from these inputs.
stamp_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
up_to_date() { local name="$1"; shift; [ -x "$KUBE_TOOLS/bin/$name" ] && [ "$(cat "$KUBE_TOOLS/bin/.$name.stamp" 2>/dev/null)" = "$(stamp_of "$@")" ]; }
mark_built() { local name="$1"; shift; stamp_of "$@" >"$KUBE_TOOLS/bin/.$name.stamp"; }

go_version="$(go env GOVERSION)"
k8s_version=v1.34.3
k8s_minor="${k8s_version#v1.}"; k8s_minor="${k8s_minor%%.*}"
version_pkg=k8s.io/component-base/version
k8s_ldflags="-s -w -X $version_pkg.gitVersion=$k8s_version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$k8s_minor -X $version_pkg.gitTreeState=clean -X $version_pkg.buildDate=1970-01-01T00:00:00Z"
# The files' contents only (sha256sum's output names the files, which would tie the stamp to the clone's path).
k8s_sum="$(cat "$here/tools/go.mod" "$here/tools/go.sum" | sha256sum | cut -c1-16)"
k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
if [ "$apiserver_only" -eq 1 ]; then k8s_cmds=(kube-apiserver); fi

phase "kubernetes $k8s_version binaries (${k8s_cmds[*]})"
todo=()
for cmd in "${k8s_cmds[@]}"; do
  up_to_date "$cmd" "$go_version" "$k8s_sum" "$k8s_ldflags" || todo+=("$cmd")
done
if [ "${#todo[@]}" -eq 0 ]; then
  echo "cached in $KUBE_TOOLS/bin"
else
  echo "building ${todo[*]} (log: $KUBE_TOOLS/build-kubernetes.log)"
  pkgs=(); for cmd in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  # One go command for all: shared packages compile once. The binaries are statically linked (CGO off).
  if ! (cd "$here/tools" && nice -n 10 go build -trimpath -ldflags "$k8s_ldflags" -o "$KUBE_TOOLS/bin/" "${pkgs[@]}") \
    >"$KUBE_TOOLS/build-kubernetes.log" 2>&1; then
    tail -n 30 "$KUBE_TOOLS/build-kubernetes.log" >&2
    exit 1
  fi
  for cmd in "${todo[@]}"; do mark_built "$cmd" "$go_version" "$k8s_sum" "$k8s_ldflags"; done
fi
"$KUBE_TOOLS/bin/kube-apiserver" --version
if [ "$apiserver_only" -eq 1 ]; then phase; exit 0; fi

coredns_version=v1.12.4
phase "coredns $coredns_version"
if up_to_date coredns "$go_version" "$coredns_version"; then
  echo "cached in $KUBE_TOOLS/bin"
else
  # CoreDNS's go.mod has no replace directives, so plain `go install` works.
  if ! GOBIN="$KUBE_TOOLS/bin" GOFLAGS=-trimpath nice -n 10 go install -ldflags "-s -w" "github.com/coredns/coredns@$coredns_version" \
    >"$KUBE_TOOLS/build-coredns.log" 2>&1; then
    tail -n 30 "$KUBE_TOOLS/build-coredns.log" >&2
    exit 1
  fi
  mark_built coredns "$go_version" "$coredns_version"
fi
"$KUBE_TOOLS/bin/coredns" -version | sed -n 1p   # sed reads to the end: head could make -version die of SIGPIPE (exit 141 under pipefail)

phase "pause (static, from k8s.io/kubernetes build/pause/linux/pause.c)"
pause_src="$(cd "$here/tools" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
if up_to_date pause "$(sha256sum <"$pause_src")"; then
  echo "cached in $KUBE_TOOLS/bin"
else
  gcc -Os -Wall -Werror -static -DVERSION="v3.10-spokelink" -o "$KUBE_TOOLS/bin/pause" "$pause_src"
  strip "$KUBE_TOOLS/bin/pause"
  mark_built pause "$(sha256sum <"$pause_src")"
fi
phase
