# Shared by hack/node/up.sh and hack/node/down.sh: where the real node keeps its
# files and which addresses it uses. Sourced, not run.
#
# Every address is in 198.18.0.0/15, reserved for benchmarking: the node, its pods
# and its services never share a range with a real network, and a guard chain drops
# that range on the machine's uplink.

NODE_NAME=valkey-node
NODE_ZONE=zone-a
NODE_IP=198.18.2.1
NODE_BRIDGE=vwnode0          # holds NODE_IP; a bridge, since this kernel has no dummy driver
POD_CIDR=198.18.0.0/24
POD_GATEWAY=198.18.0.1
POD_BRIDGE=vwcni0            # the CNI bridge plugin's bridge
SERVICE_CIDR=198.18.1.0/24
DNS_IP=198.18.1.10
GUARD_RANGE=198.18.0.0/15
GUARD_CHAIN=VWNODE-GUARD
APISERVER_PORT=6443

# NODE_ROOT holds everything the node writes but its runtime state: certificates,
# etcd, containerd's and the kubelet's roots, the provisioner's volumes, logs.
NODE_ROOT=${VALKEY_WEBHOOK_NODE_ROOT:-/var/lib/valkey-webhook-node}
# NODE_RUN holds the PIDs and what up.sh found before it changed anything (sysctls,
# iptables chains, ipsets, directories), for down.sh to put back.
NODE_RUN=/run/valkey-webhook-node
# cadvisor dials /run/containerd/containerd.sock whatever containerd's socket is, so
# containerd's state and socket are the standard ones; up.sh refuses to start when
# another containerd holds them.
CONTAINERD_STATE=/run/containerd
CONTAINERD_SOCK=$CONTAINERD_STATE/containerd.sock

# Components in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router)

# Sysctls the node needs; up.sh records their values first, down.sh puts them back.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables)

log() { echo "node: $*" >&2; }
# die prints one line that says what is wrong and what to do, and exits.
die() { echo "node: $*" >&2; exit 1; }

# pid_of NAME prints the PID recorded for a component, if that process still runs the
# binary it was started as (a PID reused by another program is not ours).
pid_of() {
  local f="$NODE_RUN/pids/$1"
  [[ -f $f ]] || return 1
  local pid exe
  read -r pid exe < "$f" || return 1
  [[ -n $pid && -d /proc/$pid ]] || return 1
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] || return 1
  echo "$pid"
}
