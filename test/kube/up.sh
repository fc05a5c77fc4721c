#!/usr/bin/env bash
# Brings up a real single-node Kubernetes v1.34.3 inside the network namespace $KUBE_NETNS: etcd (Debian),
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd (Debian) + runc, kubelet, kube-proxy
# (iptables), the CNI bridge (Debian's plugins), and CoreDNS as a Deployment in kube-system. Needs the tools
# from build-tools.sh and the images from images.sh (the pause image must be in containerd before the first pod).
# Leaves everything for down.sh; callers run down.sh from a trap (scripts/test-kube does).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin="$KUBE_TOOLS/bin"

if [ -e "/run/netns/$KUBE_NETNS" ] || [ -d "$KUBE_STATE" ]; then
  echo "up: a cluster (or its leftovers) exists: run test/kube/down.sh first" >&2
  exit 1
fi

phase "network namespace $KUBE_NETNS, certificates, configuration"
ip netns add "$KUBE_NETNS"
in_netns ip link set lo up
in_netns ip addr add "$KUBE_NODE_IP/32" dev lo
# The namespace has no default route; Service IPs need a route for the node's own connections (kubectl-free
# checks, kube-proxy's OUTPUT DNAT) to get as far as iptables, which then sends them to a pod.
in_netns ip route add "$KUBE_SERVICE_CIDR" dev lo src "$KUBE_NODE_IP"
# Pod → Service → pod on the same bridge is routed through the namespace: it must forward.
in_netns sysctl -qw net.ipv4.ip_forward=1
mkdir -p "$KUBE_STATE"/{pki,logs,etcd,kubelet,pod-logs,cni/net.d,cni/ipam,containerd} "$KUBE_RUN"
chmod 0700 "$KUBE_STATE/pki"

pki="$KUBE_STATE/pki"
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=spokelink-kube-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt"
cat >"$pki/apiserver.ext" <<EXT
subjectAltName = IP:$KUBE_NODE_IP, IP:$KUBE_SERVICE_IP, IP:127.0.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, DNS:localhost
extendedKeyUsage = serverAuth
EXT
openssl_quiet req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr"
openssl_quiet x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
  -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt"
openssl_quiet genrsa -out "$pki/sa.key" 2048
openssl_quiet rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

# Static bearer tokens, one per component (fresh random ones each run; the cluster lives for one test run).
token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
declare -A tokens
{
  for who in admin kubelet kube-proxy controller-manager scheduler; do tokens[$who]="$(token)"; done
  echo "${tokens[admin]},spokelink-admin,uid-admin,\"system:masters\""
  echo "${tokens[kubelet]},system:node:$KUBE_NODE_NAME,uid-kubelet,\"system:nodes\""
  echo "${tokens[kube-proxy]},system:kube-proxy,uid-kube-proxy,\"system:node-proxier\""
  echo "${tokens[controller-manager]},system:kube-controller-manager,uid-controller-manager"
  echo "${tokens[scheduler]},system:kube-scheduler,uid-scheduler"
} >"$pki/tokens.csv"
chmod 0600 "$pki/tokens.csv"
(umask 077; echo "Authorization: Bearer ${tokens[admin]}" >"$pki/admin.header")
kubeconfig() { # kubeconfig WHO FILE
  cat >"$2" <<KC
apiVersion: v1
kind: Config
clusters:
- name: spokelink-kube
  cluster: {server: "https://$KUBE_NODE_IP:6443", certificate-authority: "$pki/ca.crt"}
users:
- name: $1
  user: {token: "${tokens[$1]}"}
contexts:
- name: default
  context: {cluster: spokelink-kube, user: $1}
current-context: default
KC
  chmod 0600 "$2"
}
for who in admin kubelet kube-proxy controller-manager scheduler; do kubeconfig "$who" "$KUBE_STATE/$who.kubeconfig"; done

cat >"$KUBE_STATE/containerd.toml" <<TOML
version = 2
root = "$KUBE_STATE/containerd"
state = "$KUBE_RUN/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CONTAINERD_ADDRESS"
[ttrpc]
  address = "$CONTAINERD_ADDRESS.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$KUBE_IMAGES_PAUSE"
  # Root here lacks CAP_SYS_RESOURCE: lowering oom_score_adj below ours fails.
  restrict_oom_score_adj = true
  # Pods' network namespaces under our state dir, not /run/netns, so down.sh finds exactly ours.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$KUBE_STATE/cni/net.d"
TOML

cat >"$KUBE_STATE/cni/net.d/10-spokelink.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "spokelink-kube",
  "plugins": [
    {
      "type": "bridge", "bridge": "spk-cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$KUBE_STATE/cni/ipam",
               "ranges": [[{"subnet": "$KUBE_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON

# Pods inherit this for dnsPolicy Default; ClusterFirst pods get the cluster DNS. No upstream resolver:
# nothing inside the namespace can reach one anyway.
printf 'search cluster.local\nnameserver %s\n' "$KUBE_DNS_IP" >"$KUBE_STATE/resolv.conf"

cat >"$KUBE_STATE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $KUBE_NODE_IP
healthzBindAddress: 127.0.0.1
containerRuntimeEndpoint: unix://$CONTAINERD_ADDRESS
cgroupDriver: cgroupfs
cgroupRoot: /$KUBE_CGROUP_ROOT
failSwapOn: false
failCgroupV1: false
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDNS: [$KUBE_DNS_IP]
clusterDomain: cluster.local
resolvConf: $KUBE_STATE/resolv.conf
podCIDR: $KUBE_POD_CIDR
podLogsDir: $KUBE_STATE/pod-logs
serializeImagePulls: false
# Mounted Secrets/ConfigMaps are refreshed on the pod's periodic sync: 10 s instead of 1 min, so a helm upgrade
# of the spokes Secret (new tokens, a revocation) reaches the exit-node in seconds (scenario.sh waits for it).
syncFrequency: 10s
# The machine's disk is shared: never evict our pods for it, never garbage-collect our imported images.
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML

cat >"$KUBE_STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBE_STATE/kube-proxy.kubeconfig}
hostnameOverride: $KUBE_NODE_NAME
mode: iptables
clusterCIDR: $KUBE_POD_CIDR
bindAddress: $KUBE_NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$KUBE_NODE_IP/32]
conntrack: {maxPerCore: 0}
YAML

# The pods' cgroup root in every hierarchy (kubelet requires it to exist); cpuset needs its cpus/mems filled.
for hierarchy in /sys/fs/cgroup/*/; do
  mkdir -p "$hierarchy$KUBE_CGROUP_ROOT"
done
if [ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]; then
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$KUBE_CGROUP_ROOT/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$KUBE_CGROUP_ROOT/cpuset.mems"
fi

phase "etcd"
start etcd etcd --name spokelink-kube --data-dir "$KUBE_STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster spokelink-kube=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
wait_for "etcd health" 60 in_netns curl -sf http://127.0.0.1:2379/health

phase "kube-apiserver"
start kube-apiserver "$bin/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="$KUBE_NODE_IP" --advertise-address="$KUBE_NODE_IP" --secure-port=6443 \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" --client-ca-file="$pki/ca.crt" \
  --token-auth-file="$pki/tokens.csv" --authorization-mode=Node,RBAC \
  --service-cluster-ip-range="$KUBE_SERVICE_CIDR" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --enable-admission-plugins=NodeRestriction,PodSecurity \
  --kubelet-preferred-address-types=InternalIP --profiling=false \
  --cert-dir="$KUBE_STATE/apiserver-certs"
wait_for "kube-apiserver /readyz" 120 api_get /readyz
echo "apiserver $(api_get /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')"

phase "kube-controller-manager, kube-scheduler"
start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$KUBE_STATE/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --controllers='*,-nodeipam' \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true --cluster-cidr="$KUBE_POD_CIDR" --profiling=false
start kube-scheduler "$bin/kube-scheduler" --kubeconfig="$KUBE_STATE/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false
wait_for "kube-controller-manager /healthz" 60 in_netns curl -skf https://127.0.0.1:10257/healthz
wait_for "kube-scheduler /healthz" 60 in_netns curl -skf https://127.0.0.1:10259/healthz

phase "containerd + images"
start containerd containerd --config "$KUBE_STATE/containerd.toml"
wait_for "containerd" 60 ctr version
bash "$KUBE_DIR/images.sh" import

phase "kubelet, kube-proxy: node Ready"
start kubelet "$bin/kubelet" --config="$KUBE_STATE/kubelet.yaml" --kubeconfig="$KUBE_STATE/kubelet.kubeconfig" \
  --root-dir="$KUBE_STATE/kubelet" --hostname-override="$KUBE_NODE_NAME" --node-ip="$KUBE_NODE_IP" --v=1
start kube-proxy "$bin/kube-proxy" --config="$KUBE_STATE/kube-proxy.yaml"
wait_for "node $KUBE_NODE_NAME Ready" 120 kubectl wait --for=condition=Ready "node/$KUBE_NODE_NAME" --timeout=5s
kubectl get nodes -o wide

phase "CoreDNS"
sed -e "s|@KUBE_DNS_IP@|$KUBE_DNS_IP|g" -e "s|@COREDNS_IMAGE@|$KUBE_IMAGES_COREDNS|g" "$KUBE_DIR/manifests/coredns.yaml" \
  | kubectl apply -f - >/dev/null
wait_for "CoreDNS Available" 120 kubectl -n kube-system wait --for=condition=Available deployment/coredns --timeout=5s
phase
echo "up: cluster ready (KUBECONFIG=$KUBECONFIG; run kubectl inside the namespace: nsenter --net=/run/netns/$KUBE_NETNS)"
