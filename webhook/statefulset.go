package webhook

import (
	"fmt"
	"reflect"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

var (
	statefulSetGK = appsv1.SchemeGroupVersion.WithKind("StatefulSet").GroupKind()
	specPath      = field.NewPath("spec")
)

// Mutate is the admission mutation, shared by the mutating webhook and the offline
// `mutate` command. It hardens a labeled StatefulSet in place (old is the stored
// object on UPDATE, nil on CREATE) and leaves any other object alone. Invalid
// valkey-webhook.io/ annotations are returned as a 422 Invalid error and nothing is
// changed.
func Mutate(sts, old *appsv1.StatefulSet, base config.Policy) error {
	if !defaults.IsLabeled(sts) {
		return nil
	}
	return invalid(sts.Name, defaults.HardenWithOverrides(sts, old, base))
}

// Validate is the admission validation of a labeled StatefulSet, shared by the
// validating webhook and the offline `validate` command. It returns every denial,
// with its field path, and the warnings. The rules look at the new object only.
// The live scale-down check needs the stored object and the running cluster: it
// is the scale guard (scaleguard.go), which serve runs and the offline commands
// cannot.
func Validate(sts *appsv1.StatefulSet, base config.Policy) (field.ErrorList, []string) {
	errs, warnings := validate(sts, nil, base)
	return errs, texts(warnings)
}

// validate is Validate, and of an UPDATE when old is set: unknown
// valkey-webhook.io/ keys that the stored object already carries are warned
// about, not refused, and a change of settings that cannot reach the stored
// object in place is refused (validateSettingsChange). Each error's Origin is
// its rule, the label by which valkey_webhook_admission_denials_total counts it.
func validate(sts, old *appsv1.StatefulSet, base config.Policy) (field.ErrorList, []ruleWarning) {
	if !defaults.IsLabeled(sts) {
		return nil, nil
	}
	annotations, inherited := sts.Annotations, []string(nil)
	if old != nil {
		annotations, inherited = config.WithoutInheritedUnknown(sts.Annotations, old.Annotations)
	}
	p, errs := config.Effective(base, annotations, defaults.AnnotationsPath)
	errs = errs.WithOrigin("annotations")
	settingsValid := len(errs) == 0
	errs = append(errs, validateReplicas(sts, &p, specPath).WithOrigin("replicas")...)
	errs = append(errs, validateDataVolume(sts, &p, specPath).WithOrigin("dataVolume")...)
	errs = append(errs, validatePodSecurity(sts, specPath).WithOrigin("podSecurity")...)
	errs = append(errs, validateMaxmemory(sts, &p, specPath).WithOrigin("maxmemory")...)
	errs = append(errs, validateNoLiteralPassword(sts, specPath).WithOrigin("literalPassword")...)
	errs = append(errs, validateRollingUpdate(sts, specPath).WithOrigin("rollingUpdate")...)
	errs = append(errs, validatePortNames(sts, &p, specPath).WithOrigin("portNames")...)
	if old != nil && settingsValid {
		errs = append(errs, validateSettingsChange(sts, old, base, &p).WithOrigin("settingsChange")...)
	}
	warnings := statefulSetWarnings(sts, &p, specPath)
	for _, name := range inherited {
		warnings = append(warnings, ruleWarning{"unknownKey", fmt.Sprintf("%s: unknown key, kept from the stored object and ignored: remove it (the known keys are in the README, The policy)", defaults.AnnotationsPath.Key(name))})
	}
	return errs, warnings
}

// ratchet splits the errors of an UPDATE's new object into those the update
// brings, which are refused, and those the stored object has too (same rule,
// field and value: a policy tightened under it, or a rule added by a release),
// which are turned into warnings, as the API server ratchets its own validation:
// an update is never refused for what it did not change.
func ratchet(errs, stored field.ErrorList) (field.ErrorList, []ruleWarning) {
	var refused field.ErrorList
	var warnings []ruleWarning
	for _, e := range errs {
		if slices.ContainsFunc(stored, func(o *field.Error) bool { return sameError(e, o) }) {
			warnings = append(warnings, ruleWarning{e.Origin, fmt.Sprintf("%s (the stored object breaks this rule already: allowed on UPDATE, fix it when you can)", e.Error())})
			continue
		}
		refused = append(refused, e)
	}
	return refused, warnings
}

func sameError(a, b *field.Error) bool {
	return a.Type == b.Type && a.Field == b.Field && reflect.DeepEqual(a.BadValue, b.BadValue)
}

// invalid turns a non-empty error list into the 422 Invalid error kubectl shows for
// built-in validation, and an empty one into nil.
func invalid(name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(statefulSetGK, name, errs)
}
