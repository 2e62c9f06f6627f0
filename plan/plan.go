// Package plan says, before a policy edit or an upgrade, what it would change in
// the labeled StatefulSets as they are stored: whether the companion controller
// rolls their pods (the paced rollout), which valkey.conf settings that roll
// brings, and which pod template fields admission then rewrites. It is pure: the
// plan command reads the objects, from YAML or from the cluster.
package plan

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// Change is what a policy does to one stored StatefulSet.
type Change struct {
	Namespace, Name string
	// Invalid is set when the StatefulSet's overrides do not hold under the
	// policy: the controller leaves it alone (Event InvalidOverrides) and
	// admission refuses its next update that touches them. Nothing else is set.
	Invalid string
	// Rolls: the companion controller changes the pod template (its config
	// checksum, or what it holds for Keys), which rolls the pods, in its turn of
	// the paced rollout.
	Rolls bool
	// Settings: the roll changes the valkey.conf settings (the config checksum).
	Settings bool
	// Keys are the policy keys the pod template reads whose values the roll
	// brings to it (defaults.Rehardened).
	Keys []string
	// Restart, when set, is the change of transport ("turns TLS on") the roll
	// brings while the pods run and roll one at a time: it waits until the
	// StatefulSet's update strategy is OnDelete (defaults.NeedsRestart).
	Restart string
	// Go, with rollout.requireGo, is the value of the StatefulSet's
	// valkey-webhook.io/rollout-go annotation that gives the roll its go, when
	// it does not carry it yet.
	Go string
	// Removed and Added are the valkey.conf settings the roll changes, when they
	// change and the settings the pods run with are known (the StatefulSet's
	// ConfigMap).
	Removed, Added []string
	// Fields are the pod template's JSON paths that admission changes with the
	// roll or, when nothing rolls, at the next update of the template (which
	// rolls the pods anyway), each as "op path".
	Fields []string
}

// restartedAt is what `kubectl rollout restart` sets: the plan's stand-in for
// "the next update of the template", dropped from what it reports.
const restartedAt = "kubectl.kubernetes.io/restartedAt"

// StatefulSet plans one labeled StatefulSet as stored. held is the valkey.conf
// its ConfigMap holds, when known (hasHeld). base is the new policy.
func StatefulSet(sts *appsv1.StatefulSet, held string, hasHeld bool, base config.Policy) (Change, error) {
	c := Change{Namespace: sts.Namespace, Name: sts.Name}
	p, errs := config.Effective(base, sts.Annotations, defaults.AnnotationsPath)
	if len(errs) > 0 {
		c.Invalid = errs.ToAggregate().Error()
		return c, nil
	}
	// As the controller decides (controller.CompanionReconciler.Reconcile): a
	// text with the same settings stays, and a checksum of either form of the
	// text it keeps asks for nothing; a change of the settings, or of what the
	// template holds for the policy keys it reads, waits for a go (a kept text
	// whose checksum patch is still to land does not).
	want := defaults.ValkeyConf(sts, &p)
	conf := want
	kept := hasHeld && defaults.SameSettings(held, want)
	if kept {
		conf = held
	}
	next, keys := defaults.Rehardened(sts, base, &p)
	c.Settings, c.Keys = !defaults.AsksFor(sts.Spec.Template, conf), keys
	retemplated := !equality.Semantic.DeepEqual(next.Spec.Template, sts.Spec.Template)
	c.Rolls = c.Settings || retemplated
	if value, awaits := defaults.AwaitsGo(sts, &p, want); (c.Settings && !kept || retemplated) && awaits {
		c.Go = value
	}
	if c.Rolls {
		c.Restart = defaults.Describe(defaults.NeedsRestart(sts, base, &p))
	}
	if c.Settings && hasHeld {
		c.Removed, c.Added = defaults.SettingsDiff(held, want)
	}

	if next.Spec.Template.Annotations == nil {
		next.Spec.Template.Annotations = map[string]string{}
	}
	switch {
	case c.Settings:
		next.Spec.Template.Annotations[defaults.ChecksumAnnotation] = defaults.Checksum(want)
	case !c.Rolls:
		next.Spec.Template.Annotations[restartedAt] = "plan"
	}
	if errs := defaults.HardenWithOverrides(next, sts, base); len(errs) > 0 {
		c.Invalid = errs.ToAggregate().Error()
		return c, nil
	}
	delete(next.Spec.Template.Annotations, restartedAt)
	fields, err := templateChanges(sts, next)
	if err != nil {
		return c, fmt.Errorf("%s/%s: %w", sts.Namespace, sts.Name, err)
	}
	c.Fields = fields
	return c, nil
}

// templateChanges lists the JSON patch operations from before's pod template to
// after's, as "op path", sorted.
func templateChanges(before, after *appsv1.StatefulSet) ([]string, error) {
	a, err := json.Marshal(before.Spec.Template)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(after.Spec.Template)
	if err != nil {
		return nil, err
	}
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, op := range ops {
		out = append(out, op.Operation+" /spec/template"+op.Path)
	}
	slices.Sort(out)
	return out, nil
}

// Summary is the last line of a plan: how many StatefulSets roll, change at
// their next update, are left alone for invalid overrides, and stay as they are.
func Summary(changes []Change) string {
	var rolls, next, invalid, same int
	for _, c := range changes {
		switch {
		case c.Invalid != "":
			invalid++
		case c.Rolls:
			rolls++
		case len(c.Fields) > 0:
			next++
		default:
			same++
		}
	}
	parts := []string{
		fmt.Sprintf("%d roll their pods (paced: rollout.maxClusters at a time)", rolls),
		fmt.Sprintf("%d change at their next template update", next),
		fmt.Sprintf("%d unchanged", same),
	}
	if invalid > 0 {
		parts = append(parts, fmt.Sprintf("%d with overrides the policy refuses", invalid))
	}
	return fmt.Sprintf("%d labeled StatefulSets: %s", len(changes), strings.Join(parts, ", "))
}

// Text is a Change as the plan command prints it: a first line with the name and
// the verdict, then the settings and the fields, indented.
func (c Change) Text() string {
	var b strings.Builder
	name := c.Namespace + "/" + c.Name
	switch {
	case c.Invalid != "":
		fmt.Fprintf(&b, "%s: left alone, its overrides do not hold under this policy (fix them first): %s\n", name, c.Invalid)
		return b.String()
	case c.Rolls:
		var why []string
		if c.Settings {
			why = append(why, "valkey.conf settings change")
		}
		if c.Keys != nil {
			why = append(why, "its pod template takes the policy's "+strings.Join(c.Keys, ", "))
		}
		var once []string
		if c.Restart != "" {
			once = append(once, "its spec.updateStrategy.type is OnDelete (it "+c.Restart+
				" while the pods run, which cannot roll one pod at a time; then delete its pods together)")
		}
		if c.Go != "" {
			once = append(once, fmt.Sprintf("it has its go (kubectl annotate statefulset -n %s %s %s=%s --overwrite)",
				c.Namespace, c.Name, config.RolloutGoAnnotation, c.Go))
		}
		turn := ", in its turn of the paced rollout"
		if len(once) > 0 {
			turn = " once " + strings.Join(once, " and ") + ", then in its turn of the paced rollout"
		}
		fmt.Fprintf(&b, "%s: rolls its pods%s: %s\n", name, turn, strings.Join(why, "; "))
		if c.Settings && len(c.Removed)+len(c.Added) == 0 {
			b.WriteString("    (the settings its pods run with are not known: give its ConfigMap " + c.Name + "-config to see them)\n")
		}
		for _, l := range c.Removed {
			b.WriteString("    - " + l + "\n")
		}
		for _, l := range c.Added {
			b.WriteString("    + " + l + "\n")
		}
		if len(c.Fields) > 0 {
			b.WriteString("  its pod template changes:\n")
		}
	case len(c.Fields) > 0:
		fmt.Fprintf(&b, "%s: no roll now; its next template update (which rolls the pods anyway) also changes:\n", name)
	default:
		fmt.Fprintf(&b, "%s: unchanged\n", name)
	}
	for _, f := range c.Fields {
		b.WriteString("    " + f + "\n")
	}
	return b.String()
}
