package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/internal/podcluster"
)

// ScaleGuardBudget bounds the scale guard's whole live check of one request:
// reading the StatefulSet, its pods and Secrets, and asking every node. It is
// well inside the webhooks' timeoutSeconds (5 in the generated install), so that
// the API server always gets the guard's own answer: past its timeout the API
// server applies the failure policy instead, and the scale subresource's webhook
// fails open. A check that runs out of the budget refuses (enforce) or warns.
const ScaleGuardBudget = 3 * time.Second

var replicasPath = specPath.Child("replicas")

// ScaleDown is what the scale guard learned about one scale-down of a labeled
// StatefulSet: the input of DecideScaleDown.
type ScaleDown struct {
	// StatefulSet is the StatefulSet's name: its pods are <name>-<ordinal>.
	StatefulSet string
	// From and To are spec.replicas before and after; the pods of ordinals
	// To to From-1 would go.
	From, To int32
	// Addresses are every pod's address (ordinals below From), as the drain
	// command is to be given them.
	Addresses []string
	// AuthSecret and TLSSecret name the Secrets holding the password and the TLS
	// material, for the drain command's flags; empty when auth or TLS is off.
	AuthSecret, TLSSecret string
	// Unchecked, when set, is why the cluster could not be asked at all (a pod
	// that does not run, a Secret that cannot be read); Report is then ignored.
	Unchecked string
	// TimedOut says the check ran out of ScaleGuardBudget.
	TimedOut bool
	// Report is the cluster as its nodes answered: one node per ordinal below
	// From, in ordinal order (cluster.Status over podcluster.Nodes).
	Report cluster.Report
}

// ScaleVerdict is the scale guard's answer.
type ScaleVerdict struct {
	Allowed bool
	// Denial is the detail of the denial at spec.replicas: what would be lost,
	// the command that makes the scale-down safe, and the override; empty when
	// allowed.
	Denial string
	// Warnings are admission warnings: in warn mode, the denial's text.
	Warnings []string
}

// DecideScaleDown is the scale guard's decision, a pure function of what the
// cluster reported and the StatefulSet's effective policy. Scale-ups, unchanged
// replicas and scaleGuard off are allowed. Otherwise each pod that would go is
// looked at: a master that serves slots is refused, and so is a replica whose
// master (one that serves slots and stays) would be left with fewer than
// cluster.replicasPerMaster replicas among the pods that stay. What cannot be
// checked (a pod that does not run, a node that does not answer, the budget run
// out) is refused too. In warn mode the same text is a warning and the request is
// allowed.
func DecideScaleDown(sd ScaleDown, p *config.Policy) ScaleVerdict {
	if sd.To >= sd.From || p.ScaleGuard == config.ScaleGuardOff {
		return ScaleVerdict{Allowed: true}
	}
	problems, drain, replicas := scaleDownProblems(sd, p)
	if len(problems) == 0 {
		return ScaleVerdict{Allowed: true}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "scaling %s down from %d to %d pods ", sd.StatefulSet, sd.From, sd.To)
	if len(drain) > 0 || replicas {
		b.WriteString("would remove ")
	} else {
		b.WriteString("cannot be checked: ")
	}
	b.WriteString(strings.Join(problems, "; "))
	b.WriteString(".")
	if len(drain) > 0 {
		fmt.Fprintf(&b, " Move the slots with their keys to the pods that stay, then scale: %s.", drainCommand(sd, p, drain))
	}
	if replicas {
		b.WriteString(" A replica serves no slots, so removing one needs no drain, but first give its master another replica among the pods that stay (CLUSTER REPLICATE <master ID> on a replica that stays), or remove fewer pods.")
	}
	if len(drain) == 0 && !replicas {
		b.WriteString(" The scale guard refuses what it cannot check: retry once every pod runs and answers.")
	}
	if p.ScaleGuard == config.ScaleGuardWarn {
		fmt.Fprintf(&b, " Admitted anyway: scaleGuard is %s.", config.ScaleGuardWarn)
		return ScaleVerdict{Allowed: true, Warnings: []string{replicasPath.String() + ": " + b.String()}}
	}
	fmt.Fprintf(&b, " To scale down anyway, annotate the StatefulSet %s%s=%s (or =%s, which admits it with this text as a warning).",
		config.AnnotationPrefix, "scaleGuard", config.ScaleGuardOff, config.ScaleGuardWarn)
	return ScaleVerdict{Denial: b.String()}
}

// scaleDownProblems lists, in ordinal order, what makes the scale-down unsafe or
// uncheckable; drain are the ordinals of masters that serve slots, and replicas
// says a replica would leave its master short.
func scaleDownProblems(sd ScaleDown, p *config.Policy) (problems []string, drain []int, replicas bool) {
	pod := func(o int) string { return fmt.Sprintf("%s-%d", sd.StatefulSet, o) }
	nodes := sd.Report.Nodes
	switch {
	case sd.Unchecked != "":
		problems = []string{sd.Unchecked}
	case len(nodes) != int(sd.From):
		problems = []string{fmt.Sprintf("%d nodes answered for %d pods", len(nodes), sd.From)}
	default:
		for o, n := range nodes {
			if n.Error != "" {
				problems = append(problems, fmt.Sprintf("%s did not answer (%s)", pod(o), n.Error))
			}
		}
	}
	if len(problems) > 0 {
		if sd.TimedOut {
			problems = append([]string{fmt.Sprintf("the check ran out of its %s budget", ScaleGuardBudget)}, problems...)
		}
		return problems, nil, false
	}
	ordinalOf := map[string]int{}
	for o, n := range nodes {
		ordinalOf[n.ID] = o
	}
	for o := int(sd.To); o < int(sd.From); o++ {
		n := nodes[o]
		switch n.Role {
		case cluster.RoleMaster:
			if n.Slots > 0 {
				problems = append(problems, fmt.Sprintf("%s (node %s, master), which serves %d slots (%s)", pod(o), n.ID, n.Slots, n.SlotRanges))
				drain = append(drain, o)
			}
		case cluster.RoleReplica:
			m, known := ordinalOf[n.MasterID]
			if known && (m >= int(sd.To) || nodes[m].Slots == 0) {
				continue // its master goes too, or serves nothing
			}
			master := n.MasterAddress
			if known {
				master = pod(m)
			}
			left := 0
			for s := range int(sd.To) {
				if nodes[s].Role == cluster.RoleReplica && nodes[s].MasterID == n.MasterID {
					left++
				}
			}
			if left < p.Cluster.ReplicasPerMaster {
				problems = append(problems, fmt.Sprintf("%s (node %s, replica of %s), which would leave master %s (node %s) with %d replicas among the pods that stay, fewer than cluster.replicasPerMaster (%d)",
					pod(o), n.ID, master, master, n.MasterID, left, p.Cluster.ReplicasPerMaster))
				replicas = true
			}
		}
	}
	return problems, drain, replicas
}

// drainCommand is the valkey-webhook command that moves the slots off the given
// ordinals, with the flags the cluster's TLS and auth need.
func drainCommand(sd ScaleDown, p *config.Policy, ordinals []int) string {
	list := make([]string, len(ordinals))
	for i, o := range ordinals {
		list[i] = strconv.Itoa(o)
	}
	cmd := fmt.Sprintf("valkey-webhook cluster drain --nodes %s --ordinals %s", strings.Join(sd.Addresses, ","), strings.Join(list, ","))
	if sd.TLSSecret != "" {
		cmd += fmt.Sprintf(" --tls-ca <ca.crt of Secret %s>", sd.TLSSecret)
		if p.TLS.AuthClients {
			cmd += fmt.Sprintf(" --tls-cert <tls.crt of Secret %s> --tls-key <tls.key of Secret %s>", sd.TLSSecret, sd.TLSSecret)
		}
	}
	if sd.AuthSecret != "" {
		cmd += fmt.Sprintf(" --password-file <key password of Secret %s>", sd.AuthSecret)
	}
	return cmd
}

// scaleGuard is the scale guard webhook: on UPDATE of a labeled StatefulSet, or
// of the scale subresource of one, that lowers replicas, it asks the live cluster
// whether the pods that would go still serve slots.
type scaleGuard struct {
	decoder admission.Decoder
	policy  config.Policy
	// reader reads StatefulSets and their pods (serve's cache); apiReader the
	// Secrets, and what the cache does not hold yet.
	reader, apiReader client.Reader
	budget            time.Duration
}

func scaleGuardWebhook(scheme *runtime.Scheme, p config.Policy, reader, apiReader client.Reader) *admission.Webhook {
	g := &scaleGuard{decoder: admission.NewDecoder(scheme), policy: p, reader: reader, apiReader: apiReader, budget: ScaleGuardBudget}
	return &admission.Webhook{Handler: g, WithContextFunc: withReviewVersion}
}

// isScale reports whether a request is for the scale subresource of a
// StatefulSet.
func isScale(req admission.Request) bool {
	return req.Resource.Group == appsv1.GroupName && req.Resource.Resource == "statefulsets" && req.SubResource == "scale"
}

// Handle answers one request. Only an UPDATE that lowers replicas does any I/O.
func (g *scaleGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	if resp, bad := badReview(ctx, req); bad {
		return resp
	}
	statefulSet := req.Kind.Group == appsv1.GroupName && req.Kind.Version == "v1" && req.Kind.Kind == "StatefulSet" && req.SubResource == ""
	scale := isScale(req) && req.Kind.Group == autoscalingv1.GroupName && req.Kind.Version == "v1" && req.Kind.Kind == "Scale"
	switch {
	case !statefulSet && !scale:
		return admission.Allowed(fmt.Sprintf("the scale guard acts on apps/v1 StatefulSets and their scale subresource only; %s %s/%s passes unchanged", req.Kind.Kind, req.Resource.Resource, req.SubResource))
	case req.Operation != admissionv1.Update:
		return admission.Allowed(fmt.Sprintf("the scale guard acts on UPDATE only, not on %s", req.Operation))
	case len(req.Object.Raw) == 0:
		return admission.Errored(http.StatusBadRequest, errors.New("the UPDATE request has no object"))
	case len(req.OldObject.Raw) == 0:
		return admission.Errored(http.StatusBadRequest, errors.New("the UPDATE request has no oldObject"))
	}
	if scale {
		return g.handleScale(ctx, req)
	}
	return g.handleStatefulSet(ctx, req)
}

// handleStatefulSet guards an edit of spec.replicas: the old object is the
// stored StatefulSet, the new one's annotations give the policy.
func (g *scaleGuard) handleStatefulSet(ctx context.Context, req admission.Request) admission.Response {
	sts, old := &appsv1.StatefulSet{}, &appsv1.StatefulSet{}
	if err := g.decoder.DecodeRaw(req.Object, sts); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding object: %w", err))
	}
	if err := g.decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding oldObject: %w", err))
	}
	from, to := replicasOf(old), replicasOf(sts)
	// Removing the label in the same edit does not dodge the guard.
	if to >= from || (!defaults.IsLabeled(old) && !defaults.IsLabeled(sts)) {
		return admission.Allowed("")
	}
	ctx, cancel := context.WithTimeout(ctx, g.budget)
	defer cancel()
	return g.guard(ctx, old, sts.Annotations, from, to)
}

// handleScale guards the scale subresource (kubectl scale, autoscalers): the
// Scale objects carry the replicas; the StatefulSet is read for its pods,
// label and annotations.
func (g *scaleGuard) handleScale(ctx context.Context, req admission.Request) admission.Response {
	scale, old := &autoscalingv1.Scale{}, &autoscalingv1.Scale{}
	if err := g.decoder.DecodeRaw(req.Object, scale); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding object: %w", err))
	}
	if err := g.decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding oldObject: %w", err))
	}
	from, to := old.Spec.Replicas, scale.Spec.Replicas
	if to >= from {
		return admission.Allowed("")
	}
	ctx, cancel := context.WithTimeout(ctx, g.budget)
	defer cancel()
	sts, err := g.statefulSet(ctx, types.NamespacedName{Namespace: req.Namespace, Name: req.Name})
	switch {
	case apierrors.IsNotFound(err):
		return admission.Allowed(fmt.Sprintf("StatefulSet %s/%s does not exist", req.Namespace, req.Name))
	case err != nil:
		// Its label and annotations are unknown: the policy's own mode decides.
		v := DecideScaleDown(ScaleDown{StatefulSet: req.Name, From: from, To: to, TimedOut: ctx.Err() != nil,
			Unchecked: fmt.Sprintf("reading StatefulSet %s/%s: %v", req.Namespace, req.Name, err)}, &g.policy)
		return verdictResponse(req.Name, v)
	case !defaults.IsLabeled(sts):
		return admission.Allowed("")
	}
	// The scale subresource skips the validating webhook of labeled
	// StatefulSets: its static replica rule applies here too.
	p, _ := config.Effective(g.policy, sts.Annotations, defaults.AnnotationsPath)
	scaled := sts.DeepCopy()
	scaled.Spec.Replicas = &to
	if errs := validateReplicas(scaled, &p, field.NewPath("spec")); len(errs) > 0 {
		return errorsResponse(req.Name, errs, nil)
	}
	sts.Spec.Replicas = &from
	return g.guard(ctx, sts, sts.Annotations, from, to)
}

// statefulSet reads a StatefulSet from the cache, or from the API server when
// the cache does not hold it (yet: serve just started).
func (g *scaleGuard) statefulSet(ctx context.Context, key types.NamespacedName) (*appsv1.StatefulSet, error) {
	sts := &appsv1.StatefulSet{}
	err := g.reader.Get(ctx, key, sts)
	if apierrors.IsNotFound(err) {
		err = g.apiReader.Get(ctx, key, sts)
	}
	return sts, err
}

// guard checks the scale-down of a labeled StatefulSet against its cluster.
// stored is the StatefulSet with the old replicas; annotations give the policy.
func (g *scaleGuard) guard(ctx context.Context, stored *appsv1.StatefulSet, annotations map[string]string, from, to int32) admission.Response {
	// Invalid overrides are the validating webhook's to deny; here they leave
	// the policy as it is, so that they cannot turn the guard off.
	p, _ := config.Effective(g.policy, annotations, defaults.AnnotationsPath)
	if p.ScaleGuard == config.ScaleGuardOff {
		return admission.Allowed("")
	}
	return verdictResponse(stored.Name, DecideScaleDown(g.check(ctx, stored, &p, from, to), &p))
}

// check asks the cluster of the pods of ordinals below from. ctx carries the
// budget.
func (g *scaleGuard) check(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy, from, to int32) ScaleDown {
	sd := ScaleDown{StatefulSet: sts.Name, From: from, To: to}
	for o := range from {
		sd.Addresses = append(sd.Addresses, net.JoinHostPort(defaults.PodDNSName(sts, p, fmt.Sprintf("%s-%d", sts.Name, o), sts.Namespace), strconv.Itoa(p.Valkey.Port)))
	}
	if p.Auth.Enabled {
		sd.AuthSecret = defaults.AuthSecretName(sts, p)
	}
	if p.TLSEnabled() {
		sd.TLSSecret = defaults.TLSSecretName(sts, p)
	}
	unchecked := func(format string, args ...any) ScaleDown {
		sd.Unchecked = fmt.Sprintf(format, args...)
		sd.TimedOut = ctx.Err() != nil
		return sd
	}
	_, nodes, waiting, err := podcluster.List(ctx, sts, p, g.reader, g.apiReader)
	switch {
	case err != nil:
		return unchecked("%v", err)
	case waiting != "":
		return unchecked("not every pod runs: %s", waiting)
	}
	opts, waiting, err := podcluster.Options(ctx, g.apiReader, sts, p, g.budget)
	switch {
	case err != nil:
		return unchecked("%v", err)
	case waiting != "":
		return unchecked("%s", waiting)
	}
	report, err := cluster.Status(ctx, nodes, opts)
	if err != nil {
		return unchecked("%v", err)
	}
	sd.Report = report
	sd.TimedOut = ctx.Err() != nil
	return sd
}

// verdictResponse turns a verdict into the webhook's answer: a denial is the 422
// Invalid error at spec.replicas.
func verdictResponse(name string, v ScaleVerdict) admission.Response {
	if v.Allowed {
		return admission.Allowed("").WithWarnings(v.Warnings...)
	}
	return errorsResponse(name, field.ErrorList{field.Forbidden(replicasPath, v.Denial)}, v.Warnings)
}

// errorsResponse denies with a 422 Invalid status naming each field, as the API
// server's own validation does.
func errorsResponse(name string, errs field.ErrorList, warnings []string) admission.Response {
	err := invalid(name, errs)
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return admission.Denied(err.Error())
	}
	s := status.Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &s}}.WithWarnings(warnings...)
}
