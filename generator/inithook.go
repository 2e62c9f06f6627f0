package generator

// The tools whose hook the cluster-init Job can be (--init-hook), as the seed
// chart's cluster.init.hookType made it: the Job then runs when the tool has
// applied everything else, each time it syncs or upgrades, and the tool deletes
// the previous run's Job before it creates the next. A formed cluster is left as
// it is, so a run at every sync changes nothing. The pods are ready before their
// cluster forms (defaults' readiness script), so a tool that waits for the
// StatefulSet to be healthy before its hooks does not wait for ever.
const (
	// InitHookNone: a plain Job, created with the other objects.
	InitHookNone = "none"
	// InitHookArgoCD: an Argo CD PostSync hook.
	InitHookArgoCD = "argocd"
	// InitHookHelm: a Helm post-install and post-upgrade hook.
	InitHookHelm = "helm"
)

// initHookAnnotations are the cluster-init Job's annotations for hook; nil for a
// plain Job or an unknown hook (ClusterOptions.initJobProblems refuses it).
// Before-creation deletion, not on success: a finished Job keeps its pods' logs
// until the next run (or ttlSecondsAfterFinished) removes it.
func initHookAnnotations(hook string) map[string]string {
	switch hook {
	case InitHookArgoCD:
		return map[string]string{
			"argocd.argoproj.io/hook":               "PostSync",
			"argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
		}
	case InitHookHelm:
		return map[string]string{
			"helm.sh/hook":               "post-install,post-upgrade",
			"helm.sh/hook-delete-policy": "before-hook-creation",
		}
	}
	return nil
}

// initHookHeader is the output's comment line on the hook; empty for none.
func initHookHeader(hook string) string {
	switch hook {
	case InitHookArgoCD:
		return "It is an Argo CD PostSync hook: it runs after each sync has applied the other objects and they are healthy; the next sync deletes it first."
	case InitHookHelm:
		return "It is a Helm post-install and post-upgrade hook: helm waits for it, so give helm install and helm upgrade a --timeout of 15m or more (helm's default, 5m, can be shorter than the pods' start); the next upgrade deletes it first."
	}
	return ""
}
