// Package manifest reads and writes multi-document Kubernetes YAML for the offline
// commands: files, directories and standard input in, deterministic YAML or JSON out.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one object read from a file, as JSON.
type Document struct {
	// Source is the file name, or "-" for standard input.
	Source string
	// Index is the 1-based position of the document in its file.
	Index int
	JSON  []byte
}

// Where names the document in messages: "FILE (document N)".
func (d Document) Where() string {
	return fmt.Sprintf("%s (document %d)", d.Source, d.Index)
}

// ReadError is a file that could not be read or a document that is not valid YAML.
type ReadError struct {
	Source string
	Index  int // 0 when the whole file is at fault
	Err    error
}

func (e *ReadError) Error() string {
	if e.Index == 0 {
		return fmt.Sprintf("%s: %v", e.Source, e.Err)
	}
	return fmt.Sprintf("%s (document %d): %v", e.Source, e.Index, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }

// Read reads every document of a file, of every *.yaml, *.yml and *.json file of a
// directory (not recursive, in name order), or of standard input when path is "-".
// Empty documents are skipped but keep their place in the numbering.
func Read(path string, stdin io.Reader) ([]Document, error) {
	if path == "-" {
		return readStream("-", stdin)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, &ReadError{Source: path, Err: err}
	}
	if !info.IsDir() {
		return readFile(path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, &ReadError{Source: path, Err: err}
	}
	var names []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	var docs []Document
	for _, name := range names {
		d, err := readFile(filepath.Join(path, name))
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	return docs, nil
}

func readFile(path string) ([]Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ReadError{Source: path, Err: err}
	}
	defer f.Close()
	return readStream(path, f)
}

func readStream(source string, r io.Reader) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Document
	for index := 1; ; index++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, &ReadError{Source: source, Index: index, Err: err}
		}
		if isEmpty(raw) {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, &ReadError{Source: source, Index: index, Err: fmt.Errorf("not valid YAML: %w", err)}
		}
		if !bytes.HasPrefix(bytes.TrimSpace(js), []byte("{")) {
			return nil, &ReadError{Source: source, Index: index, Err: errors.New("not a Kubernetes object: a document must be a mapping with apiVersion and kind")}
		}
		docs = append(docs, Document{Source: source, Index: index, JSON: js})
	}
}

// isEmpty reports whether a YAML document holds only comments and blank lines.
func isEmpty(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "---" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}
