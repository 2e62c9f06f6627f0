package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/internal/manifest"
	"github.com/valkey-webhook/valkey-webhook/plan"
)

func newPlanCommand(o *options) *cobra.Command {
	var file, kubeconfig, namespace string
	cmd := &cobra.Command{
		Use:   "plan --config NEW (-f FILE|DIR|- | --kubeconfig FILE)",
		Short: "Say what a new policy, or this release, would change in the stored StatefulSets",
		Long: `plan reads the labeled StatefulSets as they are stored, and their ConfigMaps
(<name>-config), and says for each what the policy of --config (the built-in
defaults without it), served by this release, would change: whether the companion
controller rolls its pods, in its turn of the paced rollout, with which valkey.conf
settings, and which pod template fields admission rewrites then, or at the next
update of the template when nothing rolls. The last line counts them.

The objects come from -f (YAML as "kubectl get sts,cm -A -o yaml" prints it; a List
is read item by item) or, with --kubeconfig, from the cluster (get and list on
StatefulSets, get on ConfigMaps; -n for one namespace). Nothing is written.

Exit codes: 0 done, 2 unreadable input or a bad policy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := o.policy()
			if err != nil {
				return err
			}
			var stored []appsv1.StatefulSet
			var held map[types.NamespacedName]string
			switch {
			case (file == "") == (kubeconfig == ""):
				return badInput(errors.New("give the stored objects with either -f (a file, a directory, or - for standard input) or --kubeconfig"))
			case file != "":
				docs, err := readDocuments(file, cmd.InOrStdin())
				if err != nil {
					return err
				}
				stored, held, err = storedFromYAML(docs)
				if err != nil {
					return err
				}
			default:
				stored, held, err = storedFromCluster(cmd.Context(), kubeconfig, namespace)
				if err != nil {
					return err
				}
			}
			return printPlan(cmd.OutOrStdout(), stored, held, p)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "the stored objects: a file, a directory (its *.yaml, *.yml, *.json) or - for standard input")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "read the stored objects from the cluster of this kubeconfig")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "with --kubeconfig: only this namespace (default: all)")
	return cmd
}

// printPlan plans every labeled StatefulSet, in namespace and name order.
func printPlan(w io.Writer, stored []appsv1.StatefulSet, held map[types.NamespacedName]string, p config.Policy) error {
	slices.SortFunc(stored, func(a, b appsv1.StatefulSet) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	var changes []plan.Change
	for i := range stored {
		sts := &stored[i]
		if !defaults.IsLabeled(sts) {
			continue
		}
		conf, ok := held[types.NamespacedName{Namespace: sts.Namespace, Name: defaults.ConfigMapName(sts)}]
		c, err := plan.StatefulSet(sts, conf, ok, p)
		if err != nil {
			return err
		}
		changes = append(changes, c)
		if _, err := io.WriteString(w, c.Text()); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w, plan.Summary(changes))
	return err
}

// storedFromYAML picks the StatefulSets and the valkey.conf of the ConfigMaps out
// of the documents, items of a List included. Other objects are passed over.
func storedFromYAML(docs []manifest.Document) ([]appsv1.StatefulSet, map[types.NamespacedName]string, error) {
	var stored []appsv1.StatefulSet
	held := map[types.NamespacedName]string{}
	var add func(raw []byte, where string) error
	add = func(raw []byte, where string) error {
		var head struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return badInput(fmt.Errorf("%s: %w", where, err))
		}
		switch head.Kind {
		case "List", "StatefulSetList", "ConfigMapList":
			for i, item := range head.Items {
				if err := add(item, fmt.Sprintf("%s, item %d", where, i+1)); err != nil {
					return err
				}
			}
		case "StatefulSet":
			var sts appsv1.StatefulSet
			if err := json.Unmarshal(raw, &sts); err != nil {
				return badInput(fmt.Errorf("%s: the StatefulSet does not decode: %w", where, err))
			}
			stored = append(stored, sts)
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := json.Unmarshal(raw, &cm); err != nil {
				return badInput(fmt.Errorf("%s: the ConfigMap does not decode: %w", where, err))
			}
			if conf, ok := cm.Data[defaults.ConfigKey]; ok {
				held[types.NamespacedName{Namespace: cm.Namespace, Name: cm.Name}] = conf
			}
		}
		return nil
	}
	for _, doc := range docs {
		if err := add(doc.JSON, doc.Where()); err != nil {
			return nil, nil, err
		}
	}
	return stored, held, nil
}

// storedFromCluster lists the labeled StatefulSets and reads their ConfigMaps.
func storedFromCluster(ctx context.Context, kubeconfig, namespace string) ([]appsv1.StatefulSet, map[types.NamespacedName]string, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, nil, badInput(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		return nil, nil, badInput(fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err))
	}
	list := &appsv1.StatefulSetList{}
	if err := c.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{defaults.ClusterLabel: defaults.ClusterLabelEnabled}); err != nil {
		return nil, nil, fmt.Errorf("listing the labeled StatefulSets: %w", err)
	}
	held := map[types.NamespacedName]string{}
	for i := range list.Items {
		key := types.NamespacedName{Namespace: list.Items[i].Namespace, Name: defaults.ConfigMapName(&list.Items[i])}
		cm := &corev1.ConfigMap{}
		switch err := c.Get(ctx, key, cm); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, nil, fmt.Errorf("reading ConfigMap %s: %w", key, err)
		case !metav1.IsControlledBy(cm, &list.Items[i]):
			// The controller never writes one it does not own (Event).
		default:
			if conf, ok := cm.Data[defaults.ConfigKey]; ok {
				held[key] = conf
			}
		}
	}
	return list.Items, held, nil
}
