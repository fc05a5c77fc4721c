#!/usr/bin/env bash
# Checks the cluster up.sh made: node Ready with its address, CoreDNS answering from a pod, the spokelink
# image running under `restricted` Pod Security (Ready, non-root, reachable by pod IP, Service IP and DNS name),
# and a root pod refused. Prints "kube: N passed, N failed" last; exits non-zero when a check fails.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fill() { sed -e "s|@SPOKELINK_IMAGE@|$SPOKELINK_IMAGE|g" "$KUBE_DIR/manifests/$1"; }

phase "node and cluster DNS"
ready="$(kubectl get node "$KUBE_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>&1 || true)"
check "node $KUBE_NODE_NAME Ready" "$(ok_if test "$ready" = True)" "Ready=$ready"
address="$(kubectl get node "$KUBE_NODE_NAME" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}' 2>&1 || true)"
check "node InternalIP is $KUBE_NODE_IP" "$(ok_if test "$address" = "$KUBE_NODE_IP")" "InternalIP=$address"
version="$(kubectl get --raw /version 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')"
check "apiserver /version is $KUBE_VERSION" "$(ok_if test "$version" = "$KUBE_VERSION")" "gitVersion=$version"
dns_ready="$(kubectl -n kube-system get deployment coredns -o jsonpath='{.status.readyReplicas}' 2>&1 || true)"
check "CoreDNS Deployment has a ready replica" "$(ok_if test "$dns_ready" = 1)" "readyReplicas=$dns_ready"

phase "spokelink image under restricted Pod Security"
fill smoke.yaml | kubectl apply -f - >/dev/null
if kubectl -n kube-smoke wait --for=condition=Ready pod/exit-node --timeout=120s >/dev/null 2>&1; then
  check "exit-node pod Ready (readinessProbe /readyz)" ok
else
  check "exit-node pod Ready (readinessProbe /readyz)" fail "$(kubectl -n kube-smoke describe pod exit-node 2>&1 | tail -n 15)"
fi
uid="$(kubectl -n kube-smoke exec exit-node -- id -u 2>&1 || true)"
check "exit-node runs as a non-root uid (kubectl exec id -u)" "$(ok_if grep -qE '^[1-9][0-9]*$' <<<"$uid")" "id -u: $uid"
# (The logs in a variable: `kubectl logs | grep -q` fails under pipefail when grep's early exit SIGPIPEs kubectl.)
exit_node_logs="$(kubectl -n kube-smoke logs exit-node 2>&1 || true)"
if grep -q '"msg":"listening"' <<<"$exit_node_logs"; then
  check 'exit-node logs "listening" (kubectl logs)' ok
else
  check 'exit-node logs "listening" (kubectl logs)' fail "$(tail -n 5 <<<"$exit_node_logs")"
fi
pod_ip="$(kubectl -n kube-smoke get pod exit-node -o jsonpath='{.status.podIP}')"
by_pod_ip="$(in_netns curl -s --max-time 5 "http://$pod_ip:8123/readyz" 2>&1 || true)"
check "GET pod IP $pod_ip:8123/readyz → ready" "$(ok_if test "$by_pod_ip" = ready)" "got: $by_pod_ip"
service_ip="$(kubectl -n kube-smoke get service exit-node -o jsonpath='{.spec.clusterIP}')"
wait_for "kube-proxy to route Service $service_ip" 60 in_netns curl -sf --max-time 2 "http://$service_ip:8123/readyz" || true
by_service="$(in_netns curl -s --max-time 5 "http://$service_ip:8123/readyz" 2>&1 || true)"
check "GET Service IP $service_ip:8123/readyz → ready (kube-proxy)" "$(ok_if test "$by_service" = ready)" "got: $by_service"

phase "DNS from a pod"
fill dns-probe.yaml | kubectl apply -f - >/dev/null
probe_done() { kubectl -n kube-smoke get pod dns-probe -o jsonpath='{.status.phase}' | grep -qE '^(Succeeded|Failed)$'; }
wait_for "dns-probe to finish" 120 probe_done || true
probe="$(kubectl -n kube-smoke logs dns-probe 2>&1 | tail -n 1)"
echo "  dns-probe: $probe"
expected="{\"apiserver\":[\"$KUBE_SERVICE_IP\"],\"exitNode\":\"$service_ip\",\"readyz\":\"200 ready\"}"
check "kubernetes.default.svc.cluster.local → $KUBE_SERVICE_IP, exit-node → $service_ip, /readyz by name" \
  "$(ok_if test "$probe" = "$expected")" "got: $probe"

phase "Pod Security refuses a root pod"
refusal="$(fill root-pod.yaml | kubectl apply -f - 2>&1 || true)"
check "root pod refused by PodSecurity restricted" "$(ok_if grep -q 'violates PodSecurity "restricted' <<<"$refusal")" "got: $refusal"

phase
printf '\nkube: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
