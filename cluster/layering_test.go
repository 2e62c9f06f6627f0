package cluster

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsNoAdmissionOrReconcile keeps the layering of docs: cluster knows
// nothing of admission, reconcile, generated manifests or Kubernetes objects.
func TestImportsNoAdmissionOrReconcile(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{
		"github.com/valkey-webhook/valkey-webhook/webhook",
		"github.com/valkey-webhook/valkey-webhook/controller",
		"github.com/valkey-webhook/valkey-webhook/generator",
		"k8s.io/",
		"sigs.k8s.io/",
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if strings.HasPrefix(path, bad) {
					t.Errorf("%s imports %s", file, path)
				}
			}
		}
	}
}
