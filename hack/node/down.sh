#!/usr/bin/env bash
# make node-down: stops the real node that hack/node/up.sh started and removes
# everything it created: its processes (by recorded PID), every container process
# (by the kubelet's pod cgroups), mounts, network links, iptables chains and ipsets
# that were not there before, the sysctls it changed (put back), its files.
# Idempotent: with nothing to stop it does nothing; up.sh runs it first to clean
# what a killed earlier run left.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

[[ $(id -u) == 0 ]] || die "node-down needs root (it removes network links, mounts and iptables rules): run it as root"

before=$NODE_RUN/before

# stop NAME: SIGTERM, then SIGKILL after 15 s, of the recorded process.
stop() {
  local pid
  pid=$(pid_of "$1") || { rm -f "$NODE_RUN/pids/$1"; return 0; }
  log "stopping $1 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do
    [[ -d /proc/$pid ]] || break
    sleep 0.1
  done
  if [[ -d /proc/$pid ]]; then
    log "$1 (pid $pid) did not stop in 15s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
  fi
  rm -f "$NODE_RUN/pids/$1"
}

# Containers first: the kubelet, which would start them again, and the network
# controllers, then every task containerd runs, then every process left in the
# kubelet's pod cgroups (a run whose containerd died leaves them running).
stop kubelet
stop kube-router
stop kube-proxy
if pid_of containerd >/dev/null && [[ -S $CONTAINERD_SOCK ]]; then
  for id in $(ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1
  done
  for _ in $(seq 100); do
    running=$(ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING"' | wc -l)
    [[ $running == 0 ]] && break
    sleep 0.1
  done
  for id in $(ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1
  done
fi

# kill_cgroup_procs: SIGKILL every process in the kubepods cgroups of every
# controller (the kubelet creates them with cgroupfs; nothing else uses the name).
kill_cgroup_procs() {
  local procs
  procs=$(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un)
  [[ -z $procs ]] && return 0
  log "killing $(echo "$procs" | wc -w) container processes left in the kubepods cgroups"
  # shellcheck disable=SC2086
  kill -KILL $procs 2>/dev/null
  return 1
}
for _ in $(seq 50); do kill_cgroup_procs && break; sleep 0.2; done

stop containerd
# The shims of our containerd (they outlive it): the only shims that name its socket,
# since up.sh refuses to start beside another containerd on it.
if [[ -f $NODE_RUN/started-containerd ]]; then
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/exe" 2>/dev/null)" == */containerd-shim-runc-v2 ]] || continue
    tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q -- "-address $CONTAINERD_SOCK" || continue
    log "stopping containerd shim (pid ${p#/proc/})"
    kill -KILL "${p#/proc/}" 2>/dev/null
  done
fi
for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$c"; done

# Mounts: everything under the node's directories, deepest first.
umount_under() {
  local prefix=$1 m
  awk '{print $2}' /proc/self/mounts | sed 's/\\040/ /g' | grep -E "^${prefix}(/|$)" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
  done
}
umount_under "$NODE_ROOT"
umount_under "$CONTAINERD_STATE"
for ns in /var/run/netns/cni-* /run/netns/cni-*; do
  [[ -e $ns ]] || continue
  umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null
  rm -f "$ns"
done
umount_under /var/lib/kubelet

# The pod cgroups, deepest first.
for ctl in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
  [[ -d $ctl ]] || continue
  find "$ctl" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# Network links.
for l in $(ip -o link show master "$POD_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link delete "$l" 2>/dev/null
done
for l in "$POD_BRIDGE" "$NODE_BRIDGE"; do
  ip link show "$l" >/dev/null 2>&1 && ip link delete "$l" 2>/dev/null
done

# iptables: the guard, kube-proxy's and kube-router's own cleanup, then every chain
# (and the rules that jump to it) that was not there before up.sh, and new ipsets.
bin=$(cat "$NODE_RUN/bin" 2>/dev/null)
for chain in INPUT OUTPUT FORWARD; do
  while iptables -w -D "$chain" -j "$GUARD_CHAIN" 2>/dev/null; do :; done
done
iptables -w -F "$GUARD_CHAIN" 2>/dev/null && iptables -w -X "$GUARD_CHAIN" 2>/dev/null
if [[ -n $bin && -x $bin/kube-proxy ]]; then
  "$bin/kube-proxy" --cleanup >/dev/null 2>&1
fi
if [[ -n $bin && -x $bin/kube-router && -f $NODE_ROOT/kubeconfig/admin.kubeconfig ]]; then
  "$bin/kube-router" --cleanup-config --kubeconfig "$NODE_ROOT/kubeconfig/admin.kubeconfig" >/dev/null 2>&1
fi
# drop_new_chains IPTABLES TABLE BEFORE_FILE: deletes the chains of TABLE not listed
# in BEFORE_FILE, after the rules of other chains that jump to them (by rule number,
# last first, so that the numbers stay right).
drop_new_chains() {
  local ipt=$1 table=$2 listed=$3 new c n targets
  new=$("$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" {print $2}' | grep -vxF -f "$listed")
  [[ -z $new ]] && return 0
  for c in $("$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-P" || $1 == "-N" {print $2}'); do
    grep -qxF -- "$c" <<< "$new" && continue
    targets=$("$ipt" -w -t "$table" -S "$c" 2>/dev/null | awk '$1 == "-A" {t = ""; for (i = 1; i < NF; i++) if ($i == "-j" || $i == "-g") t = $(i + 1); print t}')
    n=$(wc -l <<< "$targets")
    for ((; n > 0; n--)); do
      grep -qxF -- "$(sed -n "${n}p" <<< "$targets")" <<< "$new" && "$ipt" -w -t "$table" -D "$c" "$n" 2>/dev/null
    done
  done
  for c in $new; do "$ipt" -w -t "$table" -F "$c" 2>/dev/null; done
  for c in $new; do "$ipt" -w -t "$table" -X "$c" 2>/dev/null; done
}
if [[ -d $before ]]; then
  for ipt in iptables ip6tables; do
    for table in filter nat mangle raw; do
      [[ -f $before/$ipt-$table ]] && drop_new_chains "$ipt" "$table" "$before/$ipt-$table"
    done
  done
  if [[ -f $before/ipsets ]]; then
    for s in $(ipset list -n 2>/dev/null | grep -vxF -f "$before/ipsets"); do
      ipset destroy "$s" 2>/dev/null
    done
  fi
  # Sysctls back to what they were.
  if [[ -f $before/sysctls ]]; then
    while read -r key value; do sysctl -qw "$key=$value" 2>/dev/null; done < "$before/sysctls"
  fi
fi
conntrack -D -s 198.18.0.0 --mask-src 255.254.0.0 >/dev/null 2>&1
conntrack -D -d 198.18.0.0 --mask-dst 255.254.0.0 >/dev/null 2>&1

# Files: the node's root, and the directories the kubelet, containerd and CNI create
# in fixed places when they were not there before.
rm -rf "$NODE_ROOT"
if [[ -f $before/absent ]]; then
  while read -r d; do rm -rf "$d"; done < "$before/absent"
fi
rm -rf "$NODE_RUN"
log "down"
