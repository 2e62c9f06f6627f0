package defaults

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// The time of a master's hand-over before its pod stops, out of the pod's
// terminationGracePeriodSeconds (docs/design.md, "Hand-over before a master stops").
const (
	// ShutdownReserve is the part of the grace period left to valkey-server once
	// the hand-over is over, for its own shutdown (an AOF fsync, an RDB save).
	ShutdownReserve = 10
	// MaxHandover bounds the hand-over: CLUSTER FAILOVER gives up by itself after
	// 5 s when the replica cannot catch up, and the switch is seen within
	// milliseconds after it succeeds.
	MaxHandover = 20
	// HandoverLinger is how long a master that handed over goes on serving,
	// answering MOVED, before it stops: a client whose slot map still names it
	// is redirected rather than failed, and refreshes its map meanwhile
	// (valkey-go does within a random delay of up to 1 s after a MOVED).
	HandoverLinger = 2
	// defaultGracePeriod is the API server's default terminationGracePeriodSeconds.
	defaultGracePeriod = 30
)

// HandoverSeconds is how long the preStop hand-over may take in a pod of this
// grace period (nil: the API server's default): the grace period less
// ShutdownReserve, at most MaxHandover, and 0 (no hand-over) when the grace
// period is shorter than the reserve.
func HandoverSeconds(grace *int64) int {
	g := int64(defaultGracePeriod)
	if grace != nil {
		g = *grace
	}
	return int(max(0, min(g-ShutdownReserve, MaxHandover)))
}

// handoverScript is the preStop hook of the valkey container. A master that
// serves slots asks each of its replicas (from CLUSTER NODES, at the addresses
// the cluster knows them by) how it is: a replica whose link to this master is
// up with its initial sync done is in sync. It asks the one with the highest
// replication offset to take over with CLUSTER FAILOVER, which pauses this
// master's clients until the replica has processed every acknowledged write (or
// gives up after 5 s, and nothing changes), and waits until this node sees itself
// a replica. It then goes on serving for HandoverLinger, answering MOVED, so that
// cluster clients learn the new master from this node rather than from a
// connection that fails; then the kubelet sends SIGTERM. A replica, a master without slots or
// without a replica in sync, and anything that fails stop at once, as without the
// hook. Every step is bounded (timeout, the deadline), so the hook never holds the
// pod past its grace period. It logs to the container's log (PID 1's stdout), as
// the kubelet keeps a hook's output only when the hook fails.
//
// Placeholders: @SECONDS@ the budget, @LINGER@ HandoverLinger, @CLI@ valkey-cli with its TLS and
// client-certificate flags, @PORT@ the local server's port, @AUTH@ the line that
// exports the password.
const handoverScript = `log() { echo "valkey-webhook preStop: $*" >>/proc/1/fd/1 2>/dev/null; }
end=$(($(date +%s) + @SECONDS@))
@AUTH@cli() { h=$1; p=$2; shift 2; timeout 2 @CLI@ -h "$h" -p "$p" "$@" 2>/dev/null | tr -d '\r'; }
if [ @SECONDS@ -le 0 ]; then log "terminationGracePeriodSeconds leaves no time for a hand-over: stopping at once"; exit 0; fi
role=$(cli 127.0.0.1 @PORT@ role | head -n 1)
if [ "$role" != master ]; then log "role ${role:-unknown}: stopping at once"; exit 0; fi
nodes=$(cli 127.0.0.1 @PORT@ cluster nodes)
set -- $(echo "$nodes" | grep myself)
if [ $# -lt 9 ]; then log "a master without slots: stopping at once"; exit 0; fi
me=$1; best=; top=-1
for a in $(echo "$nodes" | while read -r id addr flags master rest; do
  case "$master:$flags" in "$me:"*fail*|"$me:"*noaddr*|"$me:"*handshake*) ;; "$me:"*) echo "${addr%%@*}" ;; esac
done); do
  ip=${a%:*}; port=${a##*:}
  info=$(cli "$ip" "$port" info replication)
  if echo "$info" | grep -qx master_link_status:up && echo "$info" | grep -qx master_sync_in_progress:0; then
    off=$(echo "$info" | sed -n 's/^slave_repl_offset://p')
    if [ "${off:-0}" -gt "$top" ]; then best=$ip; bport=$port; top=$off; fi
  else
    log "the replica at $a is not in sync (link up, initial sync done) or does not answer"
  fi
done
if [ -z "$best" ]; then log "no replica in sync: stopping without a hand-over; the cluster fails over after cluster-node-timeout"; exit 0; fi
log "handing over to the replica at $best:$bport (offset $top)"
answer=$(cli "$best" "$bport" cluster failover)
if [ "$answer" != OK ]; then log "CLUSTER FAILOVER at $best:$bport answered '$answer': stopping without a hand-over"; exit 0; fi
# Valkey gives a manual failover 5 s; past 10 s it will not happen.
giveup=$(($(date +%s) + 10)); if [ "$giveup" -lt "$end" ]; then end=$giveup; fi
while [ "$(date +%s)" -lt "$end" ]; do
  if [ "$(cli 127.0.0.1 @PORT@ role | head -n 1)" = slave ]; then
    rest=$((end - $(date +%s))); if [ "$rest" -gt @LINGER@ ]; then rest=@LINGER@; fi
    log "hand-over done: $best:$bport is the master; answering MOVED for $rest s more"
    if [ "$rest" -gt 0 ]; then sleep "$rest"; fi
    exit 0
  fi
  sleep 0.1 2>/dev/null || sleep 1
done
log "the hand-over was not seen in time: stopping anyway"
`

// handoverHook is the valkey container's preStop hook for a pod of this grace
// period.
func handoverHook(p *config.Policy, grace *int64) *corev1.LifecycleHandler {
	auth := ""
	if p.Auth.Enabled {
		auth = fmt.Sprintf(`export REDISCLI_AUTH="$(cat %s/%s)"`+"\n", AuthDir, PasswordKey)
	}
	script := strings.NewReplacer(
		"@SECONDS@", fmt.Sprint(HandoverSeconds(grace)),
		"@CLI@", "valkey-cli"+cliTLSFlags(p),
		"@PORT@", fmt.Sprint(p.Valkey.Port),
		"@LINGER@", fmt.Sprint(HandoverLinger),
		"@AUTH@", auth,
	).Replace(handoverScript)
	return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", script}}}
}
