#!/usr/bin/env bash
# Tears down what up.sh made, even half-made: every process of the cluster (the daemons, containerd's shims,
# every container), pod sandboxes and their network namespaces, mounts, the cluster's network namespace (its
# bridge, veths and kube-proxy's iptables chains go with it), cgroups and the state directories. Then checks
# that nothing is left and exits non-zero if something is. Safe to run twice and when nothing is up.
set -uo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
started=$SECONDS

netns_inode() { stat -L -c %i "/run/netns/$KUBE_NETNS" 2>/dev/null || true; }

# The cluster's processes: those in its network namespace (etcd, control plane, containerd, kubelet,
# kube-proxy), those in its cgroups (containers, pause), and containerd's shims (they name our socket).
cluster_pids() {
  local inode
  inode="$(netns_inode)"
  if [ -n "$inode" ]; then
    stat -L -c '%n %i' /proc/[0-9]*/ns/net 2>/dev/null | awk -v inode="$inode" '$2 == inode { split($1, p, "/"); print p[3] }'
  fi
  # "[.]": the pattern must not match grep's own command line.
  grep -lsE -- "${CONTAINERD_ADDRESS%.sock}[.]sock" /proc/[0-9]*/cmdline | cut -d/ -f3
  find /sys/fs/cgroup/*/"$KUBE_CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null
}

# 1. kubelet first, so it does not restart what we stop; then every daemon by its pid file, politely.
step_started=$SECONDS
# stop_daemons NAME...: SIGTERM to each by its pid file, up to 5 s for all of them together, then SIGKILL.
stop_daemons() {
  local name pid pids=()
  for name in "$@"; do
    [ -f "$KUBE_RUN/$name.pid" ] || continue
    pid="$(cat "$KUBE_RUN/$name.pid")"
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  local alive
  for _ in $(seq 1 20); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 1 ] || break
    sleep 0.25
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
stop_daemons kubelet
stop_daemons kube-proxy kube-scheduler kube-controller-manager kube-apiserver containerd etcd
echo "down: daemons stopped in $((SECONDS - step_started)) s"
step_started=$SECONDS
# 2. Whatever is left of the cluster (containers, shims, anything the daemons started): SIGKILL, by pid.
for _ in 1 2 3 4 5; do
  pids="$(cluster_pids | grep -vx "$$" | sort -u)"
  [ -z "$pids" ] && break
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.5
done

echo "down: containers and shims killed in $((SECONDS - step_started)) s"
step_started=$SECONDS
# 3. Mounts under the state and run directories (container root file systems, shm, pod volumes, pods'
#    network namespaces), deepest first.
for _ in 1 2 3; do
  mounts="$(findmnt -rn -o TARGET | grep -E "^($KUBE_STATE|$KUBE_RUN)(/|$)" | sort -r)"
  [ -z "$mounts" ] && break
  while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done <<<"$mounts"
done

echo "down: mounts removed in $((SECONDS - step_started)) s"
step_started=$SECONDS
# 4. The cluster's network namespace: its bridge, veths and iptables chains go with it.
if [ -e "/run/netns/$KUBE_NETNS" ]; then ip netns delete "$KUBE_NETNS" 2>/dev/null || true; fi

# 5. cgroups, deepest first (a cgroup directory is removed with rmdir once it has no processes).
for hierarchy in /sys/fs/cgroup/*/; do
  root="$hierarchy$KUBE_CGROUP_ROOT"
  [ -d "$root" ] || continue
  find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
done

# 6. State.
rm -rf "$KUBE_STATE" "$KUBE_RUN"
echo "down: namespace, cgroups and state removed in $((SECONDS - step_started)) s"

# Verify.
left=0
report() { echo "down: left over: $*" >&2; left=1; }
pids="$(cluster_pids | grep -vx "$$" | sort -u)"; [ -z "$pids" ] || report "processes $(echo "$pids" | tr '\n' ' ')"
[ ! -e "/run/netns/$KUBE_NETNS" ] || report "network namespace $KUBE_NETNS"
links="$(ip -o link show | grep -E 'spk-|cni0' || true)"; [ -z "$links" ] || report "links: $links"
kube_chains="$(iptables-save 2>/dev/null | grep -c KUBE || true)"; [ "$kube_chains" = 0 ] || report "$kube_chains KUBE iptables lines in the root namespace"
mounts="$(findmnt -rn -o TARGET | grep -E "^($KUBE_STATE|$KUBE_RUN)(/|$)" || true)"; [ -z "$mounts" ] || report "mounts: $mounts"
cgroups="$(ls -d /sys/fs/cgroup/*/"$KUBE_CGROUP_ROOT" 2>/dev/null || true)"; [ -z "$cgroups" ] || report "cgroups: $cgroups"
[ ! -e "$KUBE_STATE" ] && [ ! -e "$KUBE_RUN" ] || report "state directories"
if [ "$left" -eq 0 ]; then
  echo "down: clean (no processes, netns, links, KUBE iptables lines, mounts, cgroups or state left) in $((SECONDS - started)) s"
fi
exit "$left"
