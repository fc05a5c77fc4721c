# Sourced by the harness scripts in test/kube: where things live, the cluster's addresses, helpers.
# shellcheck shell=bash

KUBE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export KUBE_DIR
# Built tools (kept between runs on the same machine; outside the repository).
export KUBE_TOOLS="${SPOKELINK_KUBE_TOOLS:-/var/cache/spokelink-kube}"
# The cluster's state, made by up.sh and removed by down.sh.
export KUBE_STATE="${SPOKELINK_KUBE_STATE:-/var/lib/spokelink-kube}"
export KUBE_RUN=/run/spokelink-kube

# The whole cluster (etcd, control plane, containerd, kubelet, kube-proxy, the pod bridge and kube-proxy's
# iptables chains) lives in one network namespace that up.sh creates and down.sh deletes: it has no link to
# the machine's network, so every address below exists only inside it.
export KUBE_NETNS=spokelink-kube
export KUBE_NODE_NAME=spokelink-kube
export KUBE_NODE_IP=10.243.0.1          # on the namespace's lo; the apiserver, kubelet and Services' endpoints
export KUBE_POD_CIDR=10.244.0.0/24      # the pod bridge spk-cni0, gateway 10.244.0.1
export KUBE_SERVICE_CIDR=10.96.0.0/16
export KUBE_SERVICE_IP=10.96.0.1        # the `kubernetes` Service
export KUBE_DNS_IP=10.96.0.10
export KUBE_CGROUP_ROOT=spokelink-kube   # pods' cgroups: /sys/fs/cgroup/<controller>/spokelink-kube/…
export KUBE_VERSION=v1.34.3
export KUBECONFIG="$KUBE_STATE/admin.kubeconfig"
export CONTAINERD_ADDRESS="$KUBE_RUN/containerd.sock"

export KUBE_IMAGES_PAUSE=localhost/pause:ci
export KUBE_IMAGES_COREDNS=localhost/coredns:ci
export KUBE_IMAGES_PROMETHEUS=localhost/prometheus:ci
export SPOKELINK_BASE_IMAGE=localhost/spokelink-base:bookworm-node20
export SPOKELINK_IMAGE="${SPOKELINK_IMAGE:-localhost/spokelink:dev}"

# shellcheck source=../../scripts/lib/phase.sh
source "$KUBE_DIR/../../scripts/lib/phase.sh"

# Run a command inside the cluster's network namespace (network only: same mounts and cgroups).
in_netns() { nsenter --net="/run/netns/$KUBE_NETNS" -- "$@"; }
# GET an apiserver path with the admin token (curl: no kubectl needed).
# (The header comes from a file so the token is not on a command line.)
api_get() { in_netns curl -sf --cacert "$KUBE_STATE/pki/ca.crt" -H "@$KUBE_STATE/pki/admin.header" "https://$KUBE_NODE_IP:6443$1"; }
kubectl() { in_netns "$KUBE_TOOLS/bin/kubectl" "$@"; }
ctr() { command ctr --address "$CONTAINERD_ADDRESS" --namespace k8s.io "$@"; }

# wait_for WHAT TIMEOUT_S CHECK...: poll CHECK until it succeeds; fails (printing WHAT) after TIMEOUT_S.
wait_for() {
  local what="$1" timeout="$2" deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "timed out after $timeout s waiting for $what" >&2; return 1; fi
    sleep 0.5
  done
}

# start NAME CMD...: a daemon of the cluster, in its network namespace, in its own session, logging to
# $KUBE_STATE/logs/NAME.log; its pid goes to $KUBE_RUN/NAME.pid for down.sh.
start() {
  local name="$1"; shift
  mkdir -p "$KUBE_STATE/logs" "$KUBE_RUN"
  setsid nsenter --net="/run/netns/$KUBE_NETNS" -- "$@" </dev/null >>"$KUBE_STATE/logs/$name.log" 2>&1 &
  echo $! >"$KUBE_RUN/$name.pid"
}

# A check suite (smoke.sh, scenario.sh, replicas.sh): one line per check, closed with "<suite>: N passed, N failed",
# which scripts/test adds to its own count.
passed=0
failed=0
check() { # check NAME ok|fail DETAIL
  if [ "$2" = ok ]; then passed=$((passed + 1)); printf '  ok    %s\n' "$1"
  else failed=$((failed + 1)); printf '  FAIL  %s: %s\n' "$1" "$3"; fi
}
ok_if() { if "$@"; then echo ok; else echo fail; fi; }
