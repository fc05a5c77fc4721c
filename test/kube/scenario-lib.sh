# Sourced by scenario.sh and replicas.sh: the tools a user has (kubectl, helm, the image's spokelink), the
# check counter, and the queries both make (the hub Prometheus' API, the exit-node's /metrics).
# Set `suite` (the name in the closing "<suite>: N passed, N failed" line) before sourcing.
# shellcheck shell=bash

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
repo="$(cd "$KUBE_DIR/../.." && pwd)"
# shellcheck source=../../scripts/lib/image-env.sh
source "$repo/scripts/lib/image-env.sh"
HELM="${HELM:-${SPOKELINK_TOOLS:-$HOME/.cache/spokelink-tools}/bin/helm}"
if [ ! -x "$HELM" ]; then bash "$repo/scripts/test-charts" --tools >/dev/null; fi
helm() { in_netns "$HELM" "$@"; }

finish() {
  phase
  printf '\n%s: %d passed, %d failed\n' "$suite" "$passed" "$failed"
  [ "$failed" -eq 0 ]
}
# A failed step the later ones need: report it and stop (the caller's trap tears the cluster down).
fatal() {
  check "$1" fail "$2"
  finish || exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"   # the image runs as uid 10001 and writes spokes.yaml there

exit_node=hub-spokelink-exit-node
control_url="wss://$exit_node.hub.svc:8123/connect"
version="$(node -p "require('$repo/packages/cli/package.json').version")"
chart_exit="$repo/charts/spokelink-exit-node"
chart_agent="$repo/charts/spokelink-agent"
image_values=(--set image.repository="${SPOKELINK_IMAGE%:*}" --set image.tag="$version" --set image.pullPolicy=Never)

# spokelink CLI from the built image, with $work as /work.
spokelink() { podman run --rm -v "$work:/work" "$SPOKELINK_IMAGE" "$@"; }
# Hub Prometheus query (python3 in the cluster's network namespace, through the pod IP).
hub_prom_ip=
promq() { in_netns python3 "$KUBE_DIR/promq.py" "http://$hub_prom_ip:9090" "$1"; }
# The exit-node pod that is Ready and not being deleted (after a delete, the old one drains next to the new one).
exit_node_ip() {
  kubectl -n hub get pods -l app.kubernetes.io/name=spokelink-exit-node -o jsonpath='{range .items[*]}{.status.podIP} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}' \
    | awk '$2 == "True" && $3 == "" { print $1; exit }'
}
exit_node_metric() { # exit_node_metric 'spokelink_sessions{spoke="spoke-a"}' → its value, or nothing
  in_netns curl -s --max-time 3 "http://$(exit_node_ip):9464/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
scalar() { promq "$1" | awk 'NR == 1 { print $NF }'; }
now() { date +%s.%N | cut -c1-14; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
