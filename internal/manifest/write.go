package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// WriteYAML writes objects (JSON) as a multi-document YAML stream, keys sorted.
func WriteYAML(w io.Writer, objects [][]byte) error {
	for i, obj := range objects {
		out, err := yaml.JSONToYAML(obj)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes one object as indented JSON, or several as a v1 List, the way
// kubectl prints them.
func WriteJSON(w io.Writer, objects [][]byte) error {
	var doc any
	if len(objects) == 1 {
		doc = json.RawMessage(objects[0])
	} else {
		items := make([]json.RawMessage, len(objects))
		for i, o := range objects {
			items[i] = o
		}
		doc = struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Items      []json.RawMessage `json:"items"`
		}{"v1", "List", items}
	}
	compact, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "    "); err != nil {
		return fmt.Errorf("formatting JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}
