package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/valkey-webhook/valkey-webhook/internal/manifest"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// offlineInput loads the policy and reads -f, for mutate and validate.
func offlineInput(o *options, file string, stdin io.Reader) ([]manifest.Document, *webhook.Offline, error) {
	p, err := o.policy()
	if err != nil {
		return nil, nil, err
	}
	docs, err := readDocuments(file, stdin)
	if err != nil {
		return nil, nil, err
	}
	return docs, webhook.NewOffline(newScheme(), p), nil
}

// readDocuments reads -f, turning a read error into exit code 2.
func readDocuments(file string, stdin io.Reader) ([]manifest.Document, error) {
	if file == "" {
		return nil, badInput(errors.New("-f is required: a file, a directory, or - for standard input"))
	}
	docs, err := manifest.Read(file, stdin)
	if err != nil {
		return nil, badInput(err)
	}
	return docs, nil
}

// malformed turns a webhook's "cannot decode" answer into exit code 2, naming the
// document.
func malformed(doc manifest.Document, err error) error {
	var m *webhook.MalformedError
	if errors.As(err, &m) {
		return badInput(fmt.Errorf("%s: the object does not decode: %s", doc.Where(), m.Message))
	}
	return err
}

// objectName is "Kind namespace/name" for messages.
func objectName(obj []byte) string {
	var meta struct {
		Kind     string            `json:"kind"`
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	_ = json.Unmarshal(obj, &meta) // the document decoded once already
	name := meta.Metadata.Name
	if meta.Metadata.Namespace != "" {
		name = meta.Metadata.Namespace + "/" + name
	}
	return meta.Kind + " " + name
}

// printDenial prints a denial with one line per field cause.
func printDenial(w io.Writer, doc manifest.Document, status *metav1.Status) {
	fmt.Fprintf(w, "%s %s: denied\n", doc.Where(), objectName(doc.JSON))
	if status.Details == nil || len(status.Details.Causes) == 0 {
		fmt.Fprintf(w, "  %s\n", status.Message)
		return
	}
	for _, c := range status.Details.Causes {
		fmt.Fprintf(w, "  %s: %s\n", c.Field, c.Message)
	}
}

func printWarnings(w io.Writer, doc manifest.Document, warnings []string) {
	for _, warning := range warnings {
		fmt.Fprintf(w, "%s %s: warning: %s\n", doc.Where(), objectName(doc.JSON), warning)
	}
}
