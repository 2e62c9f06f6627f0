#!/usr/bin/env bash
# make node-up: starts a real single-node Kubernetes on this machine, with no
# download site: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd with runc and the CNI bridge plugin (Debian's), kubelet, kube-proxy
# (iptables), kube-router (NetworkPolicy only), and as pods CoreDNS and
# local-path-provisioner (the default StorageClass). Images are built locally and
# imported into containerd. Prints `image ROLE=REF` for each image and, as its last
# line, the path of an admin kubeconfig. The facts behind each setting:
# ../shared/REAL-NODE.md and docs/real-node.md.
#
# Idempotent: it first runs down.sh, which cleans what an earlier (or killed) run
# left. Fails with one line naming what is wrong and what to do, and then leaves
# nothing running.
#
# Environment:
#   VALKEY_WEBHOOK_CACHE      where the binaries are built (hack/node/build.sh)
#   VALKEY_WEBHOOK_NODE_ROOT  the node's files (default /var/lib/valkey-webhook-node)
#   NODE_READY_TIMEOUT        seconds for each wait (default 120)
#   GOTOOLCHAIN               the Go toolchain (default go1.27.3, as the Makefile sets it)
set -Eeuo pipefail
: "${GOTOOLCHAIN:=go1.27.3}"
export GOTOOLCHAIN
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
timeout_s=${NODE_READY_TIMEOUT:-120}

# --- checks: nothing is changed before they pass --------------------------------
[[ $(uname -s) == Linux ]] || die "node-up needs Linux (it runs a kubelet); this is $(uname -s)"
[[ $(id -u) == 0 ]] || die "node-up needs root (it creates network links, mounts and iptables rules): run it as root"
missing=()
for c in containerd:containerd ctr:containerd runc:runc iptables:iptables ipset:ipset conntrack:conntrack \
  busybox:busybox-static openssl:openssl valkey-server:valkey-server valkey-cli:valkey-tools ip:iproute2 ss:iproute2; do
  command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c#*:}")
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || missing+=(containernetworking-plugins)
if ((${#missing[@]})); then
  die "missing packages: ${missing[*]}: apt-get install ${missing[*]} (valkey-server and valkey-tools from bookworm-backports; .ci/run does it)"
fi
[[ -d /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || die "no /proc/sys/net/bridge: load the br_netfilter module (modprobe br_netfilter)"
uplink=$(ip -o route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')

# --- clean what an earlier run left ----------------------------------------------
"$here/down.sh"

if [[ -S $CONTAINERD_SOCK ]] && ctr -a "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
  die "a containerd not started by node-up serves $CONTAINERD_SOCK: stop it (systemctl stop containerd) and run make node-up again"
fi
for port in $APISERVER_PORT 2379 2380 2381 10248 10249 10250 10256 10257 10259; do
  if ss -Htln "sport = :$port" 2>/dev/null | awk '{print $4}' | grep -qE "^(\*|0\.0\.0\.0|\[::\]|$NODE_IP):$port$"; then
    die "port $port is in use on all addresses or on $NODE_IP: stop what listens there (ss -tlnp 'sport = :$port') and run make node-up again"
  fi
done

# From here on, a failure stops everything this run started.
fail() {
  local rc=$?
  for f in "$NODE_ROOT"/logs/*.log; do
    [[ -f $f ]] || continue
    echo "---- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
  rm -rf /tmp/valkey-webhook-node-logs
  cp -r "$NODE_ROOT/logs" /tmp/valkey-webhook-node-logs 2>/dev/null
  "$here/down.sh" >/dev/null 2>&1
  echo "node: node-up failed and removed what it started; the components' logs are in /tmp/valkey-webhook-node-logs" >&2
  exit "$rc"
}
trap fail ERR

# wait_for WHAT CMD...: polls CMD every 0.5 s for at most $timeout_s seconds.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "node: $what did not happen within ${timeout_s}s (NODE_READY_TIMEOUT raises it)" >&2
      return 1
    fi
    sleep 0.5
  done
}

start=$SECONDS
mkdir -p "$NODE_RUN/pids" "$NODE_RUN/before" "$NODE_ROOT"/{logs,pki,kubeconfig,etc,cni/net.d,cni/ipam,volumes}
chmod 700 "$NODE_ROOT/pki"

# --- what was there before, for down.sh ------------------------------------------
before=$NODE_RUN/before
for ipt in iptables ip6tables; do
  for table in filter nat mangle raw; do
    "$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" {print $2}' > "$before/$ipt-$table"
  done
done
ipset list -n > "$before/ipsets" 2>/dev/null || : > "$before/ipsets"
: > "$before/sysctls"
for k in "${SYSCTLS[@]}" net.ipv4.conf.all.route_localnet; do
  echo "$k $(sysctl -n "$k")" >> "$before/sysctls"
done
: > "$before/absent"
for d in /var/log/pods /var/log/containers /var/lib/cni /opt/containerd "$CONTAINERD_STATE" /var/run/netns /var/lib/kubelet; do
  [[ -e $d ]] || echo "$d" >> "$before/absent"
done

# --- binaries and images -----------------------------------------------------------
assets=$("$repo/hack/envtest-assets.sh")
bin=$("$here/build.sh")
echo "$bin" > "$NODE_RUN/bin"
log "binaries: $assets, $bin"

# --- network -----------------------------------------------------------------------
ip link add "$NODE_BRIDGE" type bridge
ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
iptables -w -N "$GUARD_CHAIN"
if [[ -n $uplink ]]; then
  iptables -w -A "$GUARD_CHAIN" -o "$uplink" -d "$GUARD_RANGE" -j DROP
  iptables -w -A "$GUARD_CHAIN" -o "$uplink" -s "$GUARD_RANGE" -j DROP
  iptables -w -A "$GUARD_CHAIN" -i "$uplink" -s "$GUARD_RANGE" -j DROP
  iptables -w -A "$GUARD_CHAIN" -i "$uplink" -d "$GUARD_RANGE" -j DROP
fi
iptables -w -A "$GUARD_CHAIN" -i "$POD_BRIDGE" ! -d "$GUARD_RANGE" -j DROP
for chain in INPUT OUTPUT FORWARD; do iptables -w -I "$chain" 1 -j "$GUARD_CHAIN"; done
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
log "network: node $NODE_IP on $NODE_BRIDGE, pods $POD_CIDR, services $SERVICE_CIDR, guard $GUARD_CHAIN on ${uplink:-no uplink}"

# --- certificates ------------------------------------------------------------------
pki=$NODE_ROOT/pki
openssl_quiet() { openssl "$@" 2>> "$NODE_ROOT/logs/openssl.log"; }
openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=valkey-webhook-node-ca"
# cert NAME CN [O] [SANS]
cert() {
  local name=$1 cn=$2 o=${3:-} sans=${4:-}
  local subj="/CN=$cn"
  [[ -n $o ]] && subj="/O=$o$subj"
  openssl_quiet req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/$name.key" \
    -out "$pki/$name.csr" -subj "$subj"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } > "$pki/$name.ext"
  openssl_quiet x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$pki/$name.ext" -out "$pki/$name.crt"
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}
kubernetes_ip=${SERVICE_CIDR%.*}.1
cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$kubernetes_ip,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
cert admin admin system:masters
cert kubelet "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert controller-manager system:kube-controller-manager
cert scheduler system:kube-scheduler
cert kube-proxy system:kube-proxy
openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
openssl_quiet pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

# kubeconfig NAME CERT
kubeconfig() {
  cat > "$NODE_ROOT/kubeconfig/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: valkey-webhook-node
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: valkey-webhook-node
  context: {cluster: valkey-webhook-node, user: $1}
current-context: valkey-webhook-node
EOF
}
for k in admin:admin kubelet:kubelet controller-manager:controller-manager scheduler:scheduler kube-proxy:kube-proxy; do
  kubeconfig "${k%%:*}" "${k#*:}"
done
admin=$NODE_ROOT/kubeconfig/admin.kubeconfig
kubectl() { "$bin/kubectl" --kubeconfig "$admin" "$@"; }

# launch NAME BINARY ARGS...: starts a component in its own session, logs to
# logs/NAME.log, records "PID BINARY".
launch() {
  local name=$1 exe=$2
  shift 2
  setsid "$exe" "$@" > "$NODE_ROOT/logs/$name.log" 2>&1 < /dev/null &
  echo "$! $(readlink -f "$exe")" > "$NODE_RUN/pids/$name"
  log "started $name (pid $!)"
}
# alive NAME: the component still runs (a wait fails fast when it died).
alive() { pid_of "$1" >/dev/null || { echo "node: $1 exited: see $NODE_ROOT/logs/$1.log" >&2; return 1; }; }
healthy() { alive "$1" && shift && "$@"; }

# --- control plane -----------------------------------------------------------------
launch etcd "$assets/etcd" --data-dir "$NODE_ROOT/etcd" --name "$NODE_NAME" \
  --listen-client-urls "http://$NODE_IP:2379" --advertise-client-urls "http://$NODE_IP:2379" \
  --listen-peer-urls "http://$NODE_IP:2380" --initial-advertise-peer-urls "http://$NODE_IP:2380" \
  --initial-cluster "$NODE_NAME=http://$NODE_IP:2380" --listen-metrics-urls "http://$NODE_IP:2381" \
  --unsafe-no-fsync --quota-backend-bytes 2147483648
launch kube-apiserver "$assets/kube-apiserver" \
  --etcd-servers "http://$NODE_IP:2379" --bind-address "$NODE_IP" --advertise-address "$NODE_IP" \
  --secure-port "$APISERVER_PORT" --service-cluster-ip-range "$SERVICE_CIDR" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --kubelet-preferred-address-types InternalIP \
  --cert-dir "$NODE_ROOT/apiserver-certs" --allow-privileged=true --profiling=false
apiserver_ready() { "$bin/kubectl" --kubeconfig "$admin" get --raw /readyz; }
wait_for "kube-apiserver ready" healthy kube-apiserver apiserver_ready
launch kube-controller-manager "$assets/kube-controller-manager" \
  --kubeconfig "$NODE_ROOT/kubeconfig/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$NODE_ROOT/kubeconfig/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$NODE_ROOT/kubeconfig/controller-manager.kubeconfig" \
  --bind-address "$NODE_IP" --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$SERVICE_CIDR" --controllers '*'
launch kube-scheduler "$bin/kube-scheduler" --kubeconfig "$NODE_ROOT/kubeconfig/scheduler.kubeconfig" \
  --authentication-kubeconfig "$NODE_ROOT/kubeconfig/scheduler.kubeconfig" \
  --authorization-kubeconfig "$NODE_ROOT/kubeconfig/scheduler.kubeconfig" \
  --bind-address "$NODE_IP" --leader-elect=false

# --- images and containerd ---------------------------------------------------------
images=$(cd "$repo" && go run ./hack/node/images -bin "$bin" -out "$NODE_ROOT/images" -repo "$repo")
declare -A image
while read -r _ role_ref; do image[${role_ref%%=*}]=${role_ref#*=}; done <<< "$images"
cat > "$NODE_ROOT/etc/containerd.toml" <<EOF
version = 2
root = "$NODE_ROOT/containerd"
state = "$CONTAINERD_STATE"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_ROOT/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${image[pause]}"
  # root here lacks CAP_SYS_RESOURCE: no negative oom_score_adj (REAL-NODE.md).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_ROOT/cni/net.d"
EOF
cat > "$NODE_ROOT/cni/net.d/10-valkey-webhook-node.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "valkey-webhook-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_ROOT/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "$GUARD_RANGE"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
touch "$NODE_RUN/started-containerd"
launch containerd "$(command -v containerd)" --config "$NODE_ROOT/etc/containerd.toml"
wait_for "containerd serving $CONTAINERD_SOCK" healthy containerd ctr -a "$CONTAINERD_SOCK" version

while read -r _ role_ref; do
  ctr -a "$CONTAINERD_SOCK" -n k8s.io images import "$NODE_ROOT/images/${role_ref%%=*}.tar" >/dev/null
done <<< "$images"
log "images imported"

# --- kubelet, kube-proxy, kube-router ----------------------------------------------
: > "$NODE_ROOT/etc/resolv.conf"
cat > "$NODE_ROOT/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: $NODE_IP
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
# This machine is cgroup v1 (hybrid): kubelet 1.37 runs on it only when told so.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
# An empty host resolv.conf: pods learn no resolver of the machine's.
resolvConf: $NODE_ROOT/etc/resolv.conf
serializeImagePulls: false
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
rotateCertificates: false
serverTLSBootstrap: false
shutdownGracePeriod: 0s
EOF
launch kubelet "$bin/kubelet" --config "$NODE_ROOT/etc/kubelet.yaml" \
  --kubeconfig "$NODE_ROOT/kubeconfig/kubelet.kubeconfig" --root-dir "$NODE_ROOT/kubelet" \
  --cert-dir "$NODE_ROOT/kubelet-pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
  --node-labels "topology.kubernetes.io/zone=$NODE_ZONE" --v=1
node_registered() { kubectl get node "$NODE_NAME"; }
wait_for "node $NODE_NAME registered" healthy kubelet node_registered

cat > "$NODE_ROOT/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $NODE_ROOT/kubeconfig/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
nodePortAddresses: [$NODE_IP/32]
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0}
EOF
launch kube-proxy "$bin/kube-proxy" --config "$NODE_ROOT/etc/kube-proxy.yaml"
# kube-router exits when its Node does not exist yet: it starts after the kubelet
# registered the node, and the node has its pod CIDR.
pod_cidr_set() { [[ -n "$(kubectl get node "$NODE_NAME" -o jsonpath='{.spec.podCIDR}')" ]]; }
wait_for "pod CIDR assigned to $NODE_NAME" pod_cidr_set
launch kube-router "$bin/kube-router" --kubeconfig "$admin" --hostname-override "$NODE_NAME" \
  --run-firewall=true --run-router=false --run-service-proxy=false --enable-ipv6=false \
  --service-cluster-ip-range "$SERVICE_CIDR" --metrics-port 0 --health-port 0

# --- add-ons -----------------------------------------------------------------------
sed -e "s|@COREDNS_IMAGE@|${image[coredns]}|" -e "s|@PROVISIONER_IMAGE@|${image[local-path-provisioner]}|" \
  -e "s|@BUSYBOX_IMAGE@|${image[busybox]}|g" -e "s|@DNS_IP@|$DNS_IP|" \
  -e "s|@VOLUME_DIR@|$NODE_ROOT/volumes|" "$here/addons.yaml" | kubectl apply -f - >/dev/null
node_ready() { [[ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
wait_for "node $NODE_NAME Ready" healthy kubelet node_ready
log "node Ready after $((SECONDS - start))s"
deployment_ready() { [[ "$(kubectl -n "$1" get deployment "$2" -o jsonpath='{.status.readyReplicas}')" == 1 ]]; }
wait_for "CoreDNS Ready" healthy kubelet deployment_ready kube-system coredns
wait_for "local-path-provisioner Ready" healthy kubelet deployment_ready local-path-storage local-path-provisioner
for c in "${COMPONENTS[@]}"; do alive "$c"; done
log "up after $((SECONDS - start))s"

trap - ERR
echo "$images"
echo "$admin"
