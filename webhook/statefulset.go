package webhook

import (
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
	if !defaults.IsLabeled(sts) {
		return nil, nil
	}
	p, errs := config.Effective(base, sts.Annotations, defaults.AnnotationsPath)
	errs = append(errs, validateReplicas(sts, &p, specPath)...)
	errs = append(errs, validateDataVolume(sts, &p, specPath)...)
	errs = append(errs, validatePodSecurity(sts, specPath)...)
	errs = append(errs, validateMaxmemory(sts, &p, specPath)...)
	errs = append(errs, validateNoLiteralPassword(sts, specPath)...)
	errs = append(errs, validateRollingUpdate(sts, specPath)...)
	return errs, statefulSetWarnings(sts, &p, specPath)
}

// invalid turns a non-empty error list into the 422 Invalid error kubectl shows for
// built-in validation, and an empty one into nil.
func invalid(name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(statefulSetGK, name, errs)
}
