#!/usr/bin/env bash
# Issue 9's exit-node replicas, on the cluster and releases scenario.sh left: the exit-node chart upgraded to 2
# replicas with selector-less spoke Services (each replica keeps the EndpointSlices of the spokes it holds
# sessions for) and TLS from a Secret (the CA auto-TLS made, so the join tokens' pin still holds); both spokes'
# agents at 2 replicas. Asserted, from the EndpointSlices, the replicas' /metrics and the hub Prometheus' data:
# every spoke's slices name exactly the pods holding its sessions and the hub scrapes it through its Service;
# an exit-node pod deleted (its slices withdrawn by itself, its spokes on the other replica, scrapes resume
# ≤ 30 s); a pod killed without its shutdown (its stale slices removed, by the garbage collector or the
# survivors' sweep: the run says which); a rolling update (`helm upgrade` changing the pod template) loses at
# most one scrape per spoke, counted from the hub's `up` samples. Re-runnable on the same cluster.
# Prints "replicas: N passed, N failed" last; exits non-zero when a check fails.
set -euo pipefail

suite=replicas
# shellcheck source=scenario-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scenario-lib.sh"
hub_prom_ip="$(kubectl -n hub get pods -l app.kubernetes.io/name=prometheus -o jsonpath='{.items[0].status.podIP}')"
spokes=(spoke-a spoke-b)
scrape_interval=3   # the hub Prometheus' (manifests/scenario/hub-prometheus.yaml)

# "name ip uid" of each exit-node pod that is Ready and not being deleted.
live_pods() {
  kubectl -n hub get pods -l app.kubernetes.io/name=spokelink-exit-node -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP} {.metadata.uid} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}' \
    | awk '$4 == "True" && $5 == "" { print $1, $2, $3 }'
}
pod_metric() { # pod_metric IP METRIC → its value on that pod's /metrics, or nothing
  in_netns curl -s --max-time 3 "http://$1:9464/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}
# Sorted "ip:sessions" of the live pods holding sessions of a spoke.
holders() {
  local name ip uid n
  live_pods | while read -r name ip uid; do
    n="$(pod_metric "$ip" "spokelink_sessions{spoke=\"$1\"}")"
    if [ "${n:-0}" -gt 0 ]; then echo "$ip:$n"; fi
  done | sort | tr '\n' ' '
}
holder_ips() { holders "$1" | tr ' ' '\n' | cut -d: -f1 | grep . | tr '\n' ' '; }
sessions_total() { holders "$1" | tr ' ' '\n' | awk -F: '{ n += $2 } END { print n + 0 }'; }
# Sorted addresses of every EndpointSlice of a spoke's Service.
slice_ips() {
  kubectl -n hub get endpointslices -l "kubernetes.io/service-name=$1" \
    -o jsonpath='{range .items[*]}{range .endpoints[*]}{.addresses[0]}{"\n"}{end}{end}' | sort | grep . | tr '\n' ' '
}
# Names of the slices owned by a pod uid.
slices_of_uid() {
  kubectl -n hub get endpointslices -l endpointslice.kubernetes.io/managed-by=spokelink \
    -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].uid}{"\n"}{end}' | awk -v u="$1" '$2 == u { print $1 }'
}
# Every spoke: its 2 sessions on live pods, and its slices' addresses exactly those pods.
settled() {
  local spoke
  for spoke in "${spokes[@]}"; do
    [ "$(sessions_total "$spoke")" = 2 ] || return 1
    [ "$(holder_ips "$spoke")" = "$(slice_ips "$spoke")" ] || return 1
  done
}
# Both spokes' latest hub scrape (through their Services) is up = 1 and later than the unix time $1.
scraped_after() {
  local spoke
  for spoke in "${spokes[@]}"; do
    [ "$(scalar "count(timestamp(up{job=\"federate-$spoke\"} == 1) > $1)")" = 1 ] || return 1
  done
}
# "spoke-a: 10.244.0.12:2; spoke-b: 10.244.0.12:1 10.244.0.13:1"
placement() {
  local spoke out=
  for spoke in "${spokes[@]}"; do out+="$spoke: $(holders "$spoke" | sed 's/ $//'); "; done
  echo "${out%; }"
}
# lost_scrapes FROM TO → "spoke-a samples=… failed=… missed=… lost=N; spoke-b …" for the hub's Service jobs.
lost_scrapes() {
  local spoke out=
  for spoke in "${spokes[@]}"; do
    out+="$spoke $(in_netns python3 "$KUBE_DIR/scrapes.py" "http://$hub_prom_ip:9090" "federate-$spoke" "$1" "$2" "$scrape_interval"); "
  done
  echo "${out%; }"
}
max_lost() { grep -oE 'lost=[0-9]+' <<<"$1" | cut -d= -f2 | sort -n | tail -n 1; }

phase "exit-node: 2 replicas, selector-less spoke Services, TLS from a Secret; agents at 2 replicas"
tls_dir="$KUBE_STATE/volumes/hub-tls"   # the auto-TLS claim's hostPath (scenario.sh)
kubectl -n hub get secret "$exit_node-spokes" -o jsonpath='{.data.spokes\.yaml}' | base64 -d >"$work/spokes.yaml"
cp "$tls_dir/ca.crt" "$work/ca.crt"
chmod 0666 "$work/spokes.yaml" "$work/ca.crt"
# scenario.sh revoked spoke-b's token: a new one (what an operator does to let a spoke back in).
spoke_b_join=
if [ "$(sessions_total spoke-b)" = 0 ]; then
  json="$(spokelink token create --spokes /work/spokes.yaml --spoke spoke-b --server "$control_url" \
    --ca-file /work/ca.crt --output json 2>&1)" || fatal "token create spoke-b" "$json"
  node -e 'const j = JSON.parse(process.argv[1]); process.stdout.write(j.joinToken)' "$json" >"$work/spoke-b.join"
  spoke_b_join="$work/spoke-b.join"
fi
# Every replica must present the same certificate: the one auto-TLS made (chained to the CA the join tokens
# pin) becomes a kubernetes.io/tls Secret, as a user moving to replicas would do (or a cert-manager Certificate
# signed by that CA).
cat "$tls_dir/tls.crt" "$tls_dir/ca.crt" >"$work/chain.crt"
kubectl -n hub create secret tls hub-exit-node-tls --cert="$work/chain.crt" --key="$tls_dir/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if out="$(helm upgrade hub "$chart_exit" -n hub --reuse-values --set-file spokes="$work/spokes.yaml" \
  --set replicas=2 --set spokeServices.selectorless=true --set autoTLS.enabled=false \
  --set tls.existingSecret=hub-exit-node-tls --wait --timeout 180s 2>&1)"; then
  check "helm upgrade hub: replicas=2, spokeServices.selectorless=true, tls.existingSecret" ok
else
  fatal "helm upgrade hub to 2 replicas" "$out $(kubectl -n hub get pods 2>&1)"
fi
agent_values=(--reuse-values --set replicas=2 --wait --timeout 120s)
for spoke in "${spokes[@]}"; do
  extra=()
  if [ "$spoke" = spoke-b ] && [ -n "$spoke_b_join" ]; then extra=(--set-file joinToken="$spoke_b_join"); fi
  out="$(helm upgrade agent "$chart_agent" -n "$spoke" "${agent_values[@]}" "${extra[@]}" 2>&1)" \
    || fatal "helm upgrade agent -n $spoke replicas=2" "$out $(kubectl -n "$spoke" get pods 2>&1)"
done
selectors="$(kubectl -n hub get svc spoke-a spoke-b -o jsonpath='{range .items[*]}{.metadata.name}={.spec.selector}{" "}{end}')"
check "spoke Services have no selector" "$(ok_if test "$selectors" = "spoke-a= spoke-b= ")" "got: $selectors"
pods="$(live_pods | wc -l)"
check "2 exit-node pods Ready" "$(ok_if test "$pods" = 2)" "got: $pods"
wait_for "every spoke's 2 sessions held and its slices naming the pods that hold them" 60 settled || true
for spoke in "${spokes[@]}"; do
  got_n="$(sessions_total "$spoke")" got_holders="$(holder_ips "$spoke")" got_slices="$(slice_ips "$spoke")"
  check "$spoke: 2 sessions, on $(holders "$spoke")" "$(ok_if test "$got_n" = 2)" "got: $got_n"
  check "$spoke: its EndpointSlices' addresses are the pods holding its sessions ($got_slices)" \
    "$(ok_if test -n "$got_holders" -a "$got_holders" = "$got_slices")" "slices: $got_slices, holders: $got_holders"
  managers="$(kubectl -n hub get endpointslices -l "kubernetes.io/service-name=$spoke" \
    -o jsonpath='{range .items[*]}{.metadata.labels.endpointslice\.kubernetes\.io/managed-by}{"\n"}{end}' | sort -u | tr '\n' ' ')"
  check "$spoke: every slice of its Service is managed-by spokelink (none left by the endpointslice controller)" \
    "$(ok_if test "$managers" = "spokelink ")" "got: $managers"
done
switched_at="$(now)"
wait_for "both spokes scraped through their selector-less Services" 30 scraped_after "$switched_at" || true
for spoke in "${spokes[@]}"; do
  got="$(scalar "timestamp(up{job=\"federate-$spoke\"} == 1) > $switched_at")"
  check "hub scrapes $spoke through its selector-less Service (up = 1)" "$(ok_if test -n "$got")" \
    "up: $(scalar "up{job=\"federate-$spoke\"}")"
done

phase "fault: an exit-node pod deleted (kubectl delete pod)"
# The pod holding the most sessions, so at least one spoke has all its sessions there.
busiest() {
  local name ip uid n
  live_pods | while read -r name ip uid; do
    n="$(pod_metric "$ip" 'spokelink_sessions{spoke="spoke-a"}') $(pod_metric "$ip" 'spokelink_sessions{spoke="spoke-b"}')"
    echo "$(awk '{ print $1 + $2 }' <<<"$n") $name $ip $uid"
  done | sort -rn | awk 'NR == 1 { print $2, $3, $4 }'
}
echo "before: $(placement)"
read -r victim victim_ip victim_uid <<<"$(busiest)"
deleted_at="$(now)"
kubectl -n hub delete pod "$victim" --wait=false >/dev/null
# Its own shutdown withdraws its slices before it drains: gone while the pod still exists.
no_victim_slices() { [ -z "$(slices_of_uid "$victim_uid")" ]; }
if wait_for "the deleted pod's slices withdrawn" 15 no_victim_slices; then
  withdrawn_at="$(now)"
  still="$(kubectl -n hub get pod "$victim" -o jsonpath='{.metadata.deletionTimestamp}' 2>/dev/null || true)"
  check "the deleted pod withdrew its own slices $(elapsed "$deleted_at" "$withdrawn_at") s after the delete, while it drained" \
    "$(ok_if test -n "$still")" "the pod was already gone: someone else removed them"
else
  check "the deleted pod's slices withdrawn" fail "left: $(slices_of_uid "$victim_uid" | tr '\n' ' ')"
fi
moved() { settled && ! holder_ips spoke-a | grep -qw "$victim_ip" && ! holder_ips spoke-b | grep -qw "$victim_ip"; }
if wait_for "every spoke's sessions on the other replicas" 30 moved; then
  moved_at="$(now)"
  check "every spoke moved off the deleted pod $(elapsed "$deleted_at" "$moved_at") s after the delete: $(placement)" ok
  wait_for "both spokes scraped after the move" 30 scraped_after "$moved_at" || true
  resumed_at="$(now)"
  if scraped_after "$moved_at"; then
    took="$(elapsed "$deleted_at" "$resumed_at")"
    check "scrapes of both spokes resumed $took s after the delete (≤ 30 s)" \
      "$(ok_if awk -v t="$took" 'BEGIN { exit !(t <= 30) }')" "took $took s"
  else
    check "scrapes resumed ≤ 30 s after the delete" fail "$(promq 'up{job=~"federate-spoke-."}' | tr '\n' ' ')"
  fi
  echo "hub scrapes over the delete: $(lost_scrapes "${deleted_at%.*}" "$(now)")"
else
  check "every spoke's sessions on the other replicas ≤ 30 s after the delete" fail "$(placement)"
fi
kubectl -n hub rollout status "deployment/$exit_node" --timeout=120s >/dev/null 2>&1 || true

phase "fault: an exit-node pod killed without its shutdown (SIGSTOP, then force-deleted)"
pods_ready() { [ "$(live_pods | wc -l)" = 2 ]; }
wait_for "2 exit-node pods Ready" 60 pods_ready || true
wait_for "settled" 30 settled || true
echo "before: $(placement)"
read -r victim victim_ip victim_uid <<<"$(busiest)"
swept_total() { # spokelink_endpoint_slices_swept_total summed over the live pods other than the victim
  local name ip uid
  live_pods | while read -r name ip uid; do
    if [ "$ip" != "$victim_ip" ]; then pod_metric "$ip" spokelink_endpoint_slices_swept_total; fi
  done | awk '{ n += $1 } END { print n + 0 }'
}
swept_before="$(swept_total)"
stale="$(slices_of_uid "$victim_uid" | wc -l)"
# Stopped, its SIGTERM handler cannot run: the pod dies with its slices in place, like a crashed process or a lost node.
container="$(kubectl -n hub get pod "$victim" -o jsonpath='{.status.containerStatuses[0].containerID}')"
task_pid="$(ctr task ls | awk -v id="${container#containerd://}" '$1 == id { print $2 }')"
if [ -z "$task_pid" ]; then fatal "the exit-node container's process found" "container $container"; fi
children="$(cat /proc/"$task_pid"/task/*/children 2>/dev/null || true)"
# shellcheck disable=SC2086 # the children's pids, one word each
kill -STOP "$task_pid" $children
killed_at="$(now)"
kubectl -n hub delete pod "$victim" --grace-period=0 --force >/dev/null 2>&1
check "the killed pod left $stale EndpointSlices behind" "$(ok_if test "$stale" -gt 0)" "it had none: it held no session"
if wait_for "the killed pod's stale slices removed" 60 no_victim_slices; then
  cleaned_at="$(now)"
  swept_after="$(swept_total)"
  if [ "$swept_after" -gt "$swept_before" ]; then by="the surviving replica's sweep ($((swept_after - swept_before)) swept)"
  else by="the garbage collector (ownerReferences to the pod; the survivor swept none)"; fi
  check "the killed pod's stale slices removed $(elapsed "$killed_at" "$cleaned_at") s after it died, by $by" ok
else
  check "the killed pod's stale slices removed ≤ 60 s" fail "left: $(slices_of_uid "$victim_uid" | tr '\n' ' ')"
fi
if wait_for "every spoke's sessions on the other replicas" 30 moved; then
  moved_at="$(now)"
  check "every spoke moved off the killed pod $(elapsed "$killed_at" "$moved_at") s after it died: $(placement)" ok
  wait_for "both spokes scraped after the move" 30 scraped_after "$moved_at" || true
  resumed_at="$(now)"
  took="$(elapsed "$killed_at" "$resumed_at")"
  resumed_in_time() { scraped_after "$moved_at" && awk -v t="$took" 'BEGIN { exit !(t <= 30) }'; }
  check "scrapes of both spokes resumed $took s after the kill (≤ 30 s)" "$(ok_if resumed_in_time)" \
    "$(promq 'up{job=~"federate-spoke-."}' | tr '\n' ' ')"
  echo "hub scrapes over the kill: $(lost_scrapes "${killed_at%.*}" "$(now)")"
else
  check "every spoke's sessions on the other replicas ≤ 30 s after the kill" fail "$(placement)"
fi

phase "rolling update of the exit-node (helm upgrade changing the pod template)"
wait_for "2 exit-node pods Ready" 90 pods_ready || true
wait_for "settled" 30 settled || true
echo "before: $(placement)"
old_pods="$(live_pods | awk '{ print $1 }' | sort | tr '\n' ' ')"
update_from="$(now)"
if out="$(helm upgrade hub "$chart_exit" -n hub --reuse-values \
  --set-string podAnnotations.spokelink\\.dev/rollout="$(date +%s)" --wait --timeout 180s 2>&1)"; then
  check "helm upgrade hub (new pod template) rolled out" ok
else
  check "helm upgrade hub (new pod template) rolled out" fail "$out"
fi
kubectl -n hub rollout status "deployment/$exit_node" --timeout=120s >/dev/null 2>&1 || true
only_new() { settled && [ -z "$(comm -12 <(live_pods | awk '{ print $1 }' | sort) <(tr ' ' '\n' <<<"$old_pods" | grep . | sort))" ]; }
wait_for "every spoke on the new pods" 60 only_new || true
rolled_at="$(now)"
echo "after: $(placement)"
# Three more scrapes, so a loss at the very end is counted.
wait_for "three scrapes after the update" 20 scraped_after "$(awk -v t="$rolled_at" -v i="$scrape_interval" 'BEGIN { printf "%.3f", t + 2 * i }')" || true
update_to="$(now)"
stats="$(lost_scrapes "$update_from" "$update_to")"
lost="$(max_lost "$stats")"
check "rolling update ($(elapsed "$update_from" "$rolled_at") s) lost ≤ 1 scrape per spoke: $stats" \
  "$(ok_if test -n "$lost" -a "${lost:-9}" -le 1)" "over $(elapsed "$update_from" "$update_to") s"
check "every spoke's sessions on the new pods, its slices naming them" "$(ok_if only_new)" "$(placement)"

finish
