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
// serves slots asks its most up-to-date replica in sync (online, acknowledged
// within the last second) to take over with CLUSTER FAILOVER, which pauses the
// master's clients until the replica has every acknowledged write, and waits
// until the master sees itself a replica; then the kubelet sends SIGTERM. A
// replica, a master without slots or replicas in sync, or anything that fails
// stops at once, as without the hook. Every step is bounded (timeout, the
// deadline), so the hook never holds the pod past its grace period. It logs to
// the container's log (PID 1's stdout), since the kubelet keeps a hook's output
// only when the hook fails.
//
// Placeholders: @SECONDS@ the budget, @CLI@ valkey-cli with its port, TLS and
// client-certificate flags, @PORT@ the local server's port, @AUTH@ the line that
// exports the password.
const handoverScript = `log() { echo "valkey-webhook preStop: $*" >>/proc/1/fd/1 2>/dev/null; }
end=$(($(date +%s) + @SECONDS@))
@AUTH@cli() { h=$1; p=$2; shift 2; timeout 2 @CLI@ -h "$h" -p "$p" "$@" 2>/dev/null | tr -d '\r'; }
if [ @SECONDS@ -le 0 ]; then log "terminationGracePeriodSeconds leaves no time for a hand-over: stopping at once"; exit 0; fi
role=$(cli 127.0.0.1 @PORT@ role | head -n 1)
if [ "$role" != master ]; then log "role ${role:-unknown}: stopping at once"; exit 0; fi
set -- $(cli 127.0.0.1 @PORT@ cluster nodes | grep myself)
if [ $# -lt 9 ]; then log "a master without slots: stopping at once"; exit 0; fi
best=; top=-1
for r in $(cli 127.0.0.1 @PORT@ info replication | grep '^slave[0-9]*:'); do
  ip=$(echo "$r" | sed -n 's/.*ip=\([^,]*\).*/\1/p')
  port=$(echo "$r" | sed -n 's/.*port=\([0-9]*\).*/\1/p')
  state=$(echo "$r" | sed -n 's/.*state=\([^,]*\).*/\1/p')
  off=$(echo "$r" | sed -n 's/.*offset=\([0-9]*\).*/\1/p')
  lag=$(echo "$r" | sed -n 's/.*lag=\([0-9]*\).*/\1/p')
  if [ "$state" = online ] && [ "${lag:-9}" -le 1 ] && [ "${off:-0}" -gt "$top" ]; then best=$ip; bport=$port; top=$off; fi
done
if [ -z "$best" ]; then log "no replica in sync (online, acknowledged within 1 s): stopping without a hand-over; the cluster fails over after cluster-node-timeout"; exit 0; fi
log "handing over to the replica at $best (offset $top)"
answer=$(cli "$best" "$bport" cluster failover)
if [ "$answer" != OK ]; then log "CLUSTER FAILOVER at $best answered '$answer': stopping without a hand-over"; exit 0; fi
while [ "$(date +%s)" -lt "$end" ]; do
  if [ "$(cli 127.0.0.1 @PORT@ role | head -n 1)" = slave ]; then log "hand-over done: $best is the master"; exit 0; fi
  sleep 0.1 2>/dev/null || sleep 1
done
log "the hand-over was not seen within @SECONDS@ s: stopping anyway"
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
		"@AUTH@", auth,
	).Replace(handoverScript)
	return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", script}}}
}
