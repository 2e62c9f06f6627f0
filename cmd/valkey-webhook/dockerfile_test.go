package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileGoIsTheToolchain checks that the image is built with the Go that
// every other build uses: the build stage's golang image is the version of the
// Makefile's GOTOOLCHAIN, and each script that sets GOTOOLCHAIN itself (to run go
// without make) and the README's set-up name the same one.
func TestDockerfileGoIsTheToolchain(t *testing.T) {
	root := filepath.Join("..", "..")
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	m := regexp.MustCompile(`(?m)^export GOTOOLCHAIN := go(\S+)$`).FindStringSubmatch(read("Makefile"))
	if m == nil {
		t.Fatal("the Makefile must pin the toolchain: export GOTOOLCHAIN := goX.Y.Z")
	}
	want := m[1]
	from := regexp.MustCompile(`(?m)^FROM golang:(\S+)-bookworm AS build$`).FindStringSubmatch(read("Dockerfile"))
	if from == nil {
		t.Fatal("the Dockerfile's build stage must be FROM golang:X.Y.Z-bookworm AS build")
	}
	if from[1] != want {
		t.Errorf("Dockerfile builds with golang:%s-bookworm, the Makefile with GOTOOLCHAIN go%s", from[1], want)
	}

	scripts, err := filepath.Glob(filepath.Join(root, "hack", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := filepath.Glob(filepath.Join(root, "hack", "node", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{".ci/run", "README.md"}
	for _, s := range append(scripts, node...) {
		rel, err := filepath.Rel(root, s)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.ToSlash(rel))
	}
	set := regexp.MustCompile(`GOTOOLCHAIN:?=go([0-9]+(?:\.[0-9]+)*)`)
	pinned := 0
	for _, name := range names {
		for _, got := range set.FindAllStringSubmatch(read(name), -1) {
			pinned++
			if got[1] != want {
				t.Errorf("%s sets GOTOOLCHAIN to go%s, the Makefile to go%s", name, got[1], want)
			}
		}
	}
	// .ci/run, the README and hack/envtest-assets.sh at least.
	if pinned < 3 {
		t.Errorf("found %d places that set GOTOOLCHAIN outside the Makefile; expected .ci/run, the README and the scripts", pinned)
	}
}

// TestDockerfileCopiesEveryPackage checks that the image build context keeps
// every package of the module the binary imports: no package directory, and no
// non-test Go file in it, matches a line of .dockerignore. The image cannot be
// built here; this is the part of its build that can drift unseen.
func TestDockerfileCopiesEveryPackage(t *testing.T) {
	root := filepath.Join("..", "..")
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "\nCOPY . .\n") {
		t.Fatalf("the Dockerfile's build stage must COPY . . (the whole context, trimmed by .dockerignore), so that no package is left out")
	}
	ignored := dockerignore(t, filepath.Join(root, ".dockerignore"))
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles \",\"}}{{end}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	packages := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, _ := strings.Cut(line, "|")
		rel, err := filepath.Rel(abs, dir)
		if err != nil {
			t.Fatal(err)
		}
		packages++
		for _, f := range strings.Split(files, ",") {
			path := filepath.ToSlash(filepath.Join(rel, f))
			if pattern, ok := matchesAny(ignored, path); ok {
				t.Errorf("%s is imported by the binary but left out of the image build by .dockerignore line %q", path, pattern)
			}
		}
	}
	if packages < 5 {
		t.Fatalf("go list found %d packages of the module; expected the binary's whole tree:\n%s", packages, out)
	}
}

func dockerignore(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var patterns []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("%s: exceptions (%s) are not understood by this test; extend it", path, line)
		}
		patterns = append(patterns, strings.TrimSuffix(line, "/"))
	}
	return patterns
}

// matchesAny reports whether path, or one of its parent directories, matches a
// .dockerignore pattern ("**/" matches any number of directories).
func matchesAny(patterns []string, path string) (string, bool) {
	parts := strings.Split(path, "/")
	for _, p := range patterns {
		for i := 1; i <= len(parts); i++ {
			prefix := strings.Join(parts[:i], "/")
			if ok, _ := filepath.Match(p, prefix); ok {
				return p, true
			}
			if rest, ok := strings.CutPrefix(p, "**/"); ok {
				if ok, _ := filepath.Match(rest, parts[i-1]); ok {
					return p, true
				}
			}
		}
	}
	return "", false
}
