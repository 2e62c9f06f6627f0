package framework

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/controller"
)

// ControllerUser binds user to exactly controller.ClusterRole and, in namespace
// (created when missing), controller.Role, as the install does for serve's
// service account, and writes a kubeconfig for that user into dir. The suites
// that run serve as that user prove the roles are enough.
func (cp *ControlPlane) ControllerUser(ctx context.Context, dir, user, namespace string) (kubeconfig string, err error) {
	subject := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}
	role := controller.ClusterRole("valkey-webhook")
	leases := controller.Role("valkey-webhook", namespace)
	for _, obj := range []client.Object{
		role,
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "valkey-webhook"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   subject,
		},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		leases,
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "valkey-webhook", Namespace: namespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: leases.Name},
			Subjects:   subject,
		},
	} {
		if err := cp.Client.Create(ctx, obj); err != nil && !(apierrors.IsAlreadyExists(err) && obj.GetName() == namespace) {
			return "", fmt.Errorf("binding %s to the controller's roles: creating %T %s: %w", user, obj, obj.GetName(), err)
		}
	}
	return cp.Kubeconfig(dir, user)
}
