package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// Payload is one StatefulSet sent for CREATE to one of valkey-webhook's webhooks,
// with the verdict valkey-webhook gives it. The floor gets the same bodies on the
// same paths and allows them all.
type Payload struct {
	// Name is minimal, hardened, unsafe or unlabeled.
	Name string
	// Webhook names the webhook that gets it (mutate, validate, enforce); Path is its
	// path.
	Webhook, Path string
	// Object is the StatefulSet, as JSON.
	Object []byte
	// Want is valkey-webhook's verdict.
	Want Verdict
}

// UID is the uid of every request the generator sends.
const UID = "5b1d2c4e-0d6f-4b7a-9c3e-000000000001"

// Payloads returns the four payloads of the benchmark, built from the examples in
// the repository at root with the built-in policy:
//
//   - minimal: examples/minimal-statefulset.yaml, to the mutating webhook, which
//     hardens it (the usual CREATE);
//   - hardened: the same after the mutation, to the mutating webhook, which finds
//     nothing to change (a re-apply, or another webhook's reinvocation);
//   - unsafe: examples/unsafe/privileged.yaml after the mutation, as the API server
//     passes it on, to the validating webhook, which denies it (422);
//   - unlabeled: the minimal example without the label, to the enforcement webhook,
//     which every unlabeled StatefulSet of the cluster goes through; it is not in
//     cluster mode, so it is allowed without a word.
func Payloads(root string) ([]Payload, error) {
	minimal, err := exampleJSON(root, "examples/minimal-statefulset.yaml")
	if err != nil {
		return nil, err
	}
	privileged, err := exampleJSON(root, "examples/unsafe/privileged.yaml")
	if err != nil {
		return nil, err
	}
	offline := webhook.NewOffline(clientgoscheme.Scheme, config.Default())
	hardened, _, err := offline.Mutate(context.Background(), minimal)
	if err != nil {
		return nil, fmt.Errorf("mutating the minimal example: %w", err)
	}
	unsafe, _, err := offline.Mutate(context.Background(), privileged)
	if err != nil {
		return nil, fmt.Errorf("mutating the privileged example: %w", err)
	}
	unlabeled, err := withoutLabel(minimal)
	if err != nil {
		return nil, err
	}
	return []Payload{
		{Name: "minimal", Webhook: "mutate", Path: webhook.MutatePath, Object: minimal, Want: Verdict{Allowed: true, Patched: true}},
		{Name: "hardened", Webhook: "mutate", Path: webhook.MutatePath, Object: hardened, Want: Verdict{Allowed: true}},
		{Name: "unsafe", Webhook: "validate", Path: webhook.ValidatePath, Object: unsafe, Want: Verdict{Allowed: false, Code: 422}},
		{Name: "unlabeled", Webhook: "enforce", Path: webhook.EnforcePath, Object: unlabeled, Want: Verdict{Allowed: true}},
	}, nil
}

// Target is the generator's target for this payload on the server at baseURL
// (https://host:port); floor says the server is the floor, which allows everything.
func (p Payload) Target(baseURL string, floor bool) (Target, error) {
	body, err := Review(UID, p.Object)
	if err != nil {
		return Target{}, err
	}
	want := p.Want
	if floor {
		want = Verdict{Allowed: true}
	}
	return Target{URL: baseURL + p.Path, Body: body, UID: UID, Want: want}, nil
}

// Review wraps a StatefulSet into the AdmissionReview v1 the API server sends for
// its CREATE by an admin with kubectl.
func Review(uid string, object []byte) ([]byte, error) {
	var meta metav1.PartialObjectMetadata
	if err := json.Unmarshal(object, &meta); err != nil {
		return nil, fmt.Errorf("reading the object's metadata: %w", err)
	}
	gvk := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	gvr := metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	options, err := json.Marshal(metav1.CreateOptions{
		TypeMeta:        metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"},
		FieldManager:    "kubectl-client-side-apply",
		FieldValidation: "Strict",
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             types.UID(uid),
			Kind:            gvk,
			Resource:        gvr,
			RequestKind:     &gvk,
			RequestResource: &gvr,
			Name:            meta.Name,
			Namespace:       meta.Namespace,
			Operation:       admissionv1.Create,
			UserInfo:        authenticationv1.UserInfo{Username: "kubernetes-admin", Groups: []string{"kubeadm:cluster-admins", "system:authenticated"}},
			Object:          runtime.RawExtension{Raw: object},
			DryRun:          new(false),
			Options:         runtime.RawExtension{Raw: options},
		},
	})
}

func exampleJSON(root, rel string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	return js, nil
}

func withoutLabel(object []byte) ([]byte, error) {
	var obj map[string]any
	if err := json.Unmarshal(object, &obj); err != nil {
		return nil, err
	}
	meta, _ := obj["metadata"].(map[string]any)
	labels, _ := meta["labels"].(map[string]any)
	if _, ok := labels[defaults.ClusterLabel]; !ok {
		return nil, fmt.Errorf("the object has no label %s to remove", defaults.ClusterLabel)
	}
	delete(labels, defaults.ClusterLabel)
	return json.Marshal(obj)
}
