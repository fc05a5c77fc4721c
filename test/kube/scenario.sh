#!/usr/bin/env bash
# Issue 9's scenario on the cluster up.sh made, as a user would run it: namespaces hub, spoke-a, spoke-b under
# `restricted` Pod Security; a real Prometheus in each spoke; the exit-node chart in hub (auto-TLS, its CA
# fetched after install and pinned in join tokens made by `spokelink token create` from the image); the agent
# chart in each spoke with only the join token and its upstream; a hub Prometheus federating each spoke through
# its per-spoke Service and through the exit-node's /v1/sd; `helm test` of both charts; then faults: the
# exit-node pod deleted, a spoke's token revoked, an agent scaled to 2 and one replica deleted.
# Prints "scenario: N passed, N failed" last; exits non-zero when a check fails.
set -euo pipefail

suite=scenario
# shellcheck source=scenario-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scenario-lib.sh"

phase "namespaces hub, spoke-a, spoke-b (restricted)"
for ns in hub spoke-a spoke-b; do
  kubectl create namespace "$ns" >/dev/null
  kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/warn=restricted >/dev/null
done
enforce="$(kubectl get ns hub spoke-a spoke-b -o jsonpath='{range .items[*]}{.metadata.labels.pod-security\.kubernetes\.io/enforce} {end}')"
check "hub, spoke-a, spoke-b enforce restricted" "$(ok_if test "$enforce" = "restricted restricted restricted ")" "got: $enforce"

phase "spoke Prometheus (Debian 2.42) in spoke-a and spoke-b"
for ns in spoke-a spoke-b; do
  sed -e "s|@NS@|$ns|g" -e "s|@PROMETHEUS_IMAGE@|$KUBE_IMAGES_PROMETHEUS|g" "$KUBE_DIR/manifests/scenario/spoke-prometheus.yaml" \
    | kubectl apply -f - >/dev/null
done
for ns in spoke-a spoke-b; do
  if kubectl -n "$ns" rollout status deployment/prometheus --timeout=120s >/dev/null 2>&1; then
    check "$ns Prometheus Ready, non-root ($(kubectl -n "$ns" exec deploy/prometheus -- id -u 2>&1))" ok
  else
    fatal "$ns Prometheus Ready" "$(kubectl -n "$ns" describe pods 2>&1 | tail -n 15)"
  fi
done

phase "exit-node chart in hub (helm install --wait, auto-TLS on a claim)"
# No provisioner in this cluster: a hostPath PersistentVolume for the chart's auto-TLS claim (a real cluster's
# default StorageClass does this). The pod's uid owns it, as fsGroup would arrange on a real volume.
mkdir -p "$KUBE_STATE/volumes/hub-tls"
chown 10001:10001 "$KUBE_STATE/volumes/hub-tls"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: hub-exit-node-tls}
spec:
  capacity: {storage: 16Mi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $KUBE_STATE/volumes/hub-tls, type: Directory}
  claimRef: {namespace: hub, name: $exit_node-tls}
YAML
cat >"$work/spokes.yaml" <<'YAML'
# The scenario's spokes: tokens are added by `spokelink token create`.
spokes:
  - name: spoke-a
    labels: {cluster: spoke-a}
    tokens: []
    maxSessions: 3   # 2 agent replicas + 1 surge pod during a rolling update
    ports:
      - {upstream: prometheus, listen: "0.0.0.0:19090"}
  - name: spoke-b
    labels: {cluster: spoke-b}
    tokens: []
    maxSessions: 3   # 2 agent replicas + 1 surge pod during a rolling update
    ports:
      - {upstream: prometheus, listen: "0.0.0.0:19091"}
YAML
chmod 0666 "$work/spokes.yaml"
if out="$(helm install hub "$chart_exit" -n hub --wait --timeout 180s "${image_values[@]}" \
  --set-file spokes="$work/spokes.yaml" 2>&1)"; then
  check "helm install hub (exit-node) --wait" ok
else
  fatal "helm install hub (exit-node) --wait" "$out $(kubectl -n hub describe pods 2>&1 | tail -n 20)"
fi

phase "join tokens (spokelink token create from the image, the auto-TLS CA pinned)"
# What the chart's NOTES tell a user: fetch the CA the exit-node made, pin it in every join token.
kubectl -n hub exec "deploy/$exit_node" -- cat /var/lib/spokelink/tls/ca.crt >"$work/ca.crt"
check "auto-TLS CA fetched from the exit-node" "$(ok_if grep -q 'BEGIN CERTIFICATE' "$work/ca.crt")" "got: $(head -c 200 "$work/ca.crt")"
declare -A token_id
for spoke in spoke-a spoke-b; do
  json="$(spokelink token create --spokes /work/spokes.yaml --spoke "$spoke" --server "$control_url" \
    --ca-file /work/ca.crt --output json 2>&1)" || fatal "token create $spoke" "$json"
  node -e 'const j = JSON.parse(process.argv[1]); process.stdout.write(j.joinToken)' "$json" >"$work/$spoke.join"
  token_id[$spoke]="$(node -p 'JSON.parse(process.argv[1]).id' "$json")"
  pin="$(node -e 'const t = require("fs").readFileSync(process.argv[1], "utf8");
    const p = JSON.parse(Buffer.from(t.slice("slkj1.".length), "base64url").toString());
    console.log(p.server + " " + (p.caSha256 ? "pinned" : "unpinned"))' "$work/$spoke.join")"
  check "$spoke join token: $control_url, CA pinned" "$(ok_if test "$pin" = "$control_url pinned")" "got: $pin"
done
if out="$(helm upgrade hub "$chart_exit" -n hub --reuse-values --set-file spokes="$work/spokes.yaml" --wait 2>&1)"; then
  check "helm upgrade hub with the tokens' hashes" ok
else
  fatal "helm upgrade hub with the tokens' hashes" "$out"
fi

phase "agent chart in spoke-a and spoke-b (only the join token and the upstream)"
for spoke in spoke-a spoke-b; do
  if out="$(helm install agent "$chart_agent" -n "$spoke" --wait --timeout 120s "${image_values[@]}" \
    --set-file joinToken="$work/$spoke.join" --set upstreams.prometheus="prometheus.$spoke.svc:9090" 2>&1)"; then
    check "helm install agent -n $spoke --wait (Ready = holds a session)" ok
  else
    fatal "helm install agent -n $spoke --wait" "$out $(kubectl -n "$spoke" logs deploy/agent-spokelink-agent 2>&1 | tail -n 5)"
  fi
done
# (wait_for runs a command again and again: checks that compute something are functions, not "$(…)" arguments.)
connected() { [ "$(exit_node_metric "spokelink_spoke_connected{spoke=\"$1\"}")" = 1 ]; }
for spoke in spoke-a spoke-b; do
  wait_for "exit-node spokelink_spoke_connected{spoke=\"$spoke\"} 1" 30 connected "$spoke" || true
  got="$(exit_node_metric "spokelink_sessions{spoke=\"$spoke\"}")"
  check "exit-node /metrics spokelink_sessions{spoke=\"$spoke\"} = 1" "$(ok_if test "$got" = 1)" "got: $got"
done

phase "hub Prometheus: federation by Service DNS name and by /v1/sd"
sed -e "s|@PROMETHEUS_IMAGE@|$KUBE_IMAGES_PROMETHEUS|g" \
  -e "s|@SD_URL@|http://$exit_node-admin.hub.svc:9464/v1/sd|g" "$KUBE_DIR/manifests/scenario/hub-prometheus.yaml" \
  | kubectl apply -f - >/dev/null
kubectl -n hub rollout status deployment/prometheus --timeout=120s >/dev/null 2>&1 \
  || fatal "hub Prometheus Ready" "$(kubectl -n hub describe pods -l app.kubernetes.io/name=prometheus 2>&1 | tail -n 15)"
hub_prom_ip="$(kubectl -n hub get pods -l app.kubernetes.io/name=prometheus -o jsonpath='{.items[0].status.podIP}')"
# Every (via, spoke, cluster) the hub holds federated series for: exactly these four, none crossed.
want=$'cluster=spoke-a,spoke=spoke-a,via=sd\ncluster=spoke-a,spoke=spoke-a,via=service\ncluster=spoke-b,spoke=spoke-b,via=sd\ncluster=spoke-b,spoke=spoke-b,via=service'
combos() { promq 'count by (via, spoke, cluster) (prometheus_build_info{via!=""})' | cut -d' ' -f1 | sort; }
all_combos() { [ "$(combos)" = "$want" ]; }
wait_for "the hub to hold both spokes' series by both jobs" 60 all_combos || true
got="$(combos)"
check "hub series: each spoke's own cluster label, by Service and by /v1/sd, none crossed" \
  "$(ok_if test "$got" = "$want")" "got: $(tr '\n' ' ' <<<"$got")"
series="$(promq 'count(count by (__name__) ({job="prometheus", cluster="spoke-a", spoke="spoke-a"}))' | awk '{print $NF}')"
check "hub has $series metric names of spoke-a's Prometheus" "$(ok_if test "${series:-0}" -gt 50)" "got: $series"
ups="$(promq 'up{job=~"federate-spoke-.|spokelink-sd"}' | sed 's/instance=[^,]*,//' | sort | tr '\n' ' ')"
check "hub up = 1 for both Service jobs and both /v1/sd targets" \
  "$(ok_if test "$(grep -o ' 1' <<<"$ups" | wc -l)" = 4)" "got: $ups"

phase "helm test (both charts)"
for release in hub:hub agent:spoke-a agent:spoke-b; do
  if out="$(helm test "${release%%:*}" -n "${release#*:}" --timeout 120s 2>&1)"; then
    check "helm test ${release%%:*} -n ${release#*:}" ok
  else
    check "helm test ${release%%:*} -n ${release#*:}" fail "$(tail -n 8 <<<"$out")"
  fi
done

phase "fault: the exit-node pod deleted"
old_pod="$(kubectl -n hub get pods -l app.kubernetes.io/name=spokelink-exit-node -o jsonpath='{.items[0].metadata.name}')"
kubectl -n hub delete pod "$old_pod" --wait=false >/dev/null
new_pod_ready() {
  local pod
  pod="$(kubectl -n hub get pods -l app.kubernetes.io/name=spokelink-exit-node \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    | awk -v old="$old_pod" '$1 != old && $2 == "True" { print $1 }')"
  [ -n "$pod" ]
}
wait_for "a new exit-node pod Ready" 120 new_pod_ready || fatal "new exit-node pod Ready" "$(kubectl -n hub get pods 2>&1)"
ready_at="$(now)"
# Back = both agents hold a session with the new pod (the old one may still serve while it drains: kube-proxy
# uses a terminating endpoint while no other is ready), and then a scrape of each through it succeeded.
both_on_new_pod() { connected spoke-a && connected spoke-b; }
if wait_for "both agents connected to the new exit-node pod" 30 both_on_new_pod; then
  connected_at="$(now)"
  check "both agents hold a session with the new exit-node pod $(elapsed "$ready_at" "$connected_at") s after it was Ready" ok
  resumed() { [ "$(scalar "count(timestamp(up{job=~\"federate-spoke-.\"} == 1) > $connected_at)")" = 2 ]; }
  left=$(( 30 - ${connected_at%.*} + ${ready_at%.*} )); [ "$left" -gt 0 ] || left=1
  if wait_for "both spokes scraped through the new pod" "$left" resumed; then
    check "scrapes of both spokes resumed $(elapsed "$ready_at" "$(now)") s after the new pod was Ready (≤ 30 s)" ok
  else
    check "scrapes resumed ≤ 30 s after the new exit-node pod was Ready" fail "$(promq 'up{job=~"federate-spoke-."}' | tr '\n' ' ')"
  fi
else
  check "both agents back ≤ 30 s after the new exit-node pod was Ready" fail \
    "spokelink_spoke_connected: a=$(exit_node_metric 'spokelink_spoke_connected{spoke="spoke-a"}') b=$(exit_node_metric 'spokelink_spoke_connected{spoke="spoke-b"}')"
fi

phase "fault: spoke-b's token revoked (helm upgrade with the revoked spokes file)"
out="$(spokelink token revoke --spokes /work/spokes.yaml "${token_id[spoke-b]}" 2>&1)" || fatal "token revoke" "$out"
revoked_at="$(now)"
helm upgrade hub "$chart_exit" -n hub --reuse-values --set-file spokes="$work/spokes.yaml" >/dev/null 2>&1 \
  || fatal "helm upgrade hub with spoke-b revoked" "$(helm status hub -n hub 2>&1 | tail -n 5)"
# The kubelet rewrites the mounted Secret on its next sync of the pod; the exit-node then cuts the session.
b_cut() { [ "$(exit_node_metric 'spokelink_sessions{spoke="spoke-b"}')" = 0 ]; }
if wait_for "spoke-b's session cut" 120 b_cut; then
  check "spoke-b's session cut $(elapsed "$revoked_at" "$(now)") s after helm upgrade" ok
else
  check "spoke-b's session cut" fail "spokelink_sessions{spoke=\"spoke-b\"} = $(exit_node_metric 'spokelink_sessions{spoke="spoke-b"}')"
fi
cut_at="$(now)"
b_down() { [ "$(scalar "timestamp(up{job=\"federate-spoke-b\"} == 0) > $cut_at")" != "" ]; }
wait_for "hub up{job=federate-spoke-b} 0" 30 b_down || true
got_b="$(scalar 'up{job="federate-spoke-b"}')"
check "hub up{job=\"federate-spoke-b\"} = 0" "$(ok_if test "$got_b" = 0)" "got: $got_b"
window=$(( $(date +%s) - ${revoked_at%.*} + 1 ))
got_a="$(scalar "min_over_time(up{job=\"federate-spoke-a\"}[${window}s])")"
check "spoke-a untouched: every hub scrape of it up = 1 over the last ${window} s" "$(ok_if test "$got_a" = 1)" "got: $got_a"
got="$(exit_node_metric 'spokelink_sessions{spoke="spoke-a"}')"
check "spoke-a still holds its session" "$(ok_if test "$got" = 1)" "got: $got"

phase "fault: spoke-a's agent scaled to 2, one replica deleted"
helm upgrade agent "$chart_agent" -n spoke-a --reuse-values --set replicas=2 --wait --timeout 120s >/dev/null 2>&1 \
  || fatal "helm upgrade agent -n spoke-a replicas=2" "$(kubectl -n spoke-a get pods 2>&1)"
two() { [ "$(exit_node_metric 'spokelink_sessions{spoke="spoke-a"}')" = 2 ]; }
wait_for "spokelink_sessions{spoke=spoke-a} 2" 60 two || true
got="$(exit_node_metric 'spokelink_sessions{spoke="spoke-a"}')"
check "both spoke-a agents hold a session (spokelink_sessions{spoke=\"spoke-a\"} = 2)" "$(ok_if test "$got" = 2)" "got: $got"
victim="$(kubectl -n spoke-a get pods -l app.kubernetes.io/name=spokelink-agent -o jsonpath='{.items[0].metadata.name}')"
deleted_at="$(date +%s)"
kubectl -n spoke-a delete pod "$victim" --wait=true --timeout=60s >/dev/null
gone_at="$(now)"
# Every scrape since the delete, once at least 4 of them came after the pod was gone.
window() { echo $(( $(date +%s) - deleted_at + 1 )); }
scrapes_after_gone() { [ "$(scalar "count(timestamp(up{job=\"federate-spoke-a\"}) > $gone_at)")" = 1 ] &&
  [ "$(scalar "count_over_time(up{job=\"federate-spoke-a\"}[$(( $(date +%s) - ${gone_at%.*} ))s])")" -ge 4 ]; }
wait_for "4 scrapes of spoke-a after the replica is gone" 30 scrapes_after_gone || true
window="$(window)"
got_min="$(scalar "min_over_time(up{job=\"federate-spoke-a\"}[${window}s])")"
got_n="$(scalar "count_over_time(up{job=\"federate-spoke-a\"}[${window}s])")"
check "no scrape of spoke-a lost while a replica was deleted (min up = 1 over $got_n scrapes in ${window} s)" \
  "$(ok_if test "$got_min" = 1)" "min up = $got_min over $got_n scrapes"
wait_for "spokelink_sessions{spoke=spoke-a} back to 2" 60 two || true
got="$(exit_node_metric 'spokelink_sessions{spoke="spoke-a"}')"
check "the replacement agent holds a session (spokelink_sessions{spoke=\"spoke-a\"} = 2)" "$(ok_if test "$got" = 2)" "got: $got"

finish
