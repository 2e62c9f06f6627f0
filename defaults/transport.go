package defaults

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// TransportChange is a change between two settings of one cluster that a pod
// rolled alone onto the new ones could not make with its peers still on the
// old: TLS or auth turned on or off. Such a change cannot reach running pods
// one at a time: admission refuses a template update that would roll it
// (webhook validateSettingsChange), and the companion controller holds a
// policy edit that brings it (controller.CompanionReconciler) until the pods
// can restart together.
type TransportChange struct {
	Change string   // what it does, as a verb phrase: "turns TLS on"
	Keys   []string // the policy keys that make it
	Why    string   // what the first rolled pod could not do
}

// TransportChanges are the changes of transport from the settings was to p.
func TransportChanges(was, p *config.Policy) []TransportChange {
	var out []TransportChange
	if was.TLSEnabled() != p.TLSEnabled() {
		out = append(out, TransportChange{Change: "turns TLS " + onOff(p.TLSEnabled()), Keys: []string{"tls.secretName", "tls.issuer"},
			Why: "speaks TLS on the cluster bus to peers that do not, or the other way round"})
	}
	if was.Auth.Enabled != p.Auth.Enabled {
		out = append(out, TransportChange{Change: "turns auth " + onOff(p.Auth.Enabled), Keys: []string{"auth.enabled"},
			Why: "cannot replicate from a master of the other kind (one asks for a password the other does not send)"})
	}
	return out
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// NeedsRestart are the transport changes a roll of the stored sts to the
// settings of p (its effective policy over base) would bring while its pods run
// and roll one at a time: such a roll waits until its update strategy is
// OnDelete, so that the pods restart together. The companion controller holds
// by it and the plan prints it.
func NeedsRestart(sts *appsv1.StatefulSet, base config.Policy, p *config.Policy) []TransportChange {
	if sts.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType || sts.Status.Replicas == 0 {
		return nil
	}
	was, ok := StoredPolicy(sts, base)
	if !ok {
		return nil
	}
	return TransportChanges(&was, p)
}

// Describe joins what changes do, for messages: "turns TLS on and turns auth
// off".
func Describe(changes []TransportChange) string {
	what := make([]string, len(changes))
	for i, t := range changes {
		what[i] = t.Change
	}
	return strings.Join(what, " and ")
}
