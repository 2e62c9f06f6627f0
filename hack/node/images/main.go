// Command images builds the real node's container images as OCI archives, with no
// registry: each image is one layer, a tar of its root filesystem written here from
// files of this machine (Debian's packages, the node's binaries) and binaries built
// from the checkout. `ctr -n k8s.io images import` loads the archives
// (hack/node/up.sh). It prints `image ROLE=REF` for each image and writes ROLE.tar
// into -out. The same inputs give the same bytes.
//
//	go run ./hack/node/images -bin <hack/node/build.sh's directory> -out DIR
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Prefix names every image as one of the real node's, never as an upstream image.
const Prefix = "localhost/valkey-webhook-node/"

// image is one image's recipe.
type image struct {
	role, ref  string
	entrypoint []string
	cmd        []string
	user       string
	build      func(l *layer) error
}

func main() {
	bin := flag.String("bin", "", "directory of the node's binaries (hack/node/build.sh prints it)")
	out := flag.String("out", "", "directory for the OCI archives")
	repo := flag.String("repo", ".", "the checkout, for the images built from it")
	flag.Parse()
	if *bin == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "images: -bin and -out are required")
		os.Exit(2)
	}
	if err := run(*bin, *out, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(bin, out, repo string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	gobin := filepath.Join(out, "gobin")
	goBuild := func(name, pkg, ldflags, overlay string) (string, error) {
		dst := filepath.Join(gobin, name)
		args := []string{"build", "-trimpath", "-o", dst}
		if ldflags != "" {
			args = append(args, "-ldflags="+ldflags)
		}
		if overlay != "" {
			args = append(args, "-overlay="+overlay)
		}
		cmd := exec.Command("go", append(args, pkg)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("go build %s: %w", pkg, err)
		}
		return dst, nil
	}
	variant, err := commentVariantOverlay(repo, gobin)
	if err != nil {
		return err
	}
	built := map[string]string{}
	for _, b := range []struct{ name, pkg, ldflags, overlay string }{
		{"pause", "./hack/node/pause", "-s -w", ""},
		{"exporter-stand-in", "./hack/node/exporter-stand-in", "-s -w", ""},
		{"clusterclient", "./test/realnode/clusterclient", "-s -w", ""},
		{"writer", "./test/realnode/writer", "-s -w", ""},
		// As the Dockerfile builds it.
		{"valkey-webhook", "./cmd/valkey-webhook", "-s -w", ""},
		{"valkey-webhook-comment-changed", "./cmd/valkey-webhook", "-s -w", variant},
	} {
		p, err := goBuild(b.name, b.pkg, b.ldflags, b.overlay)
		if err != nil {
			return err
		}
		built[b.name] = p
	}
	valkeyVersion, err := debianValkeyVersion()
	if err != nil {
		return err
	}

	images := []image{
		{role: "pause", ref: Prefix + "pause:3.10", entrypoint: []string{"/pause"}, user: "65535:65535",
			build: func(l *layer) error { return l.file("/pause", built["pause"], 0o755) }},
		{role: "valkey", ref: Prefix + "valkey-debian:" + valkeyVersion, user: "999:999",
			build: func(l *layer) error {
				l.etc(map[string]int{"valkey": 999})
				l.dir("/data", 0o755, 999)
				l.dir("/etc/valkey", 0o755, 0)
				if err := l.busybox(); err != nil {
					return err
				}
				return l.elf("/usr/bin/valkey-cli", "/usr/bin/valkey-server", "/usr/bin/valkey-check-rdb")
			}},
		{role: "busybox", ref: Prefix + "busybox-debian:1.35.0", entrypoint: []string{"/bin/sh"},
			build: func(l *layer) error { l.etc(nil); return l.busybox() }},
		{role: "exporter", ref: Prefix + "exporter-stand-in:v1", entrypoint: []string{"/exporter-stand-in"}, user: "65534:65534",
			build: func(l *layer) error {
				l.etc(nil)
				return l.file("/exporter-stand-in", built["exporter-stand-in"], 0o755)
			}},
		{role: "cluster-client", ref: Prefix + "cluster-client:dev", entrypoint: []string{"/clusterclient"}, user: "65534:65534",
			build: func(l *layer) error { l.etc(nil); return l.file("/clusterclient", built["clusterclient"], 0o755) }},
		{role: "availability-writer", ref: Prefix + "availability-writer:dev", entrypoint: []string{"/writer"}, user: "65534:65534",
			build: func(l *layer) error { l.etc(nil); return l.file("/writer", built["writer"], 0o755) }},
		{role: "valkey-webhook", ref: Prefix + "valkey-webhook:dev", entrypoint: []string{"/valkey-webhook"}, cmd: []string{"serve"}, user: "65532:65532",
			build: func(l *layer) error { return webhookRoot(l, built["valkey-webhook"]) }},
		{role: "valkey-webhook-comment-changed", ref: Prefix + "valkey-webhook:comment-changed", entrypoint: []string{"/valkey-webhook"}, cmd: []string{"serve"}, user: "65532:65532",
			build: func(l *layer) error { return webhookRoot(l, built["valkey-webhook-comment-changed"]) }},
		{role: "coredns", ref: Prefix + "coredns:1.15.0", entrypoint: []string{"/coredns"}, user: "65532:65532",
			build: func(l *layer) error { l.etc(nil); return l.file("/coredns", filepath.Join(bin, "coredns"), 0o755) }},
		{role: "local-path-provisioner", ref: Prefix + "local-path-provisioner:0.0.30", entrypoint: []string{"/usr/bin/local-path-provisioner"},
			build: func(l *layer) error {
				l.etc(nil)
				return l.file("/usr/bin/local-path-provisioner", filepath.Join(bin, "local-path-provisioner"), 0o755)
			}},
	}
	for _, img := range images {
		l := newLayer()
		if err := img.build(l); err != nil {
			return fmt.Errorf("image %s: %w", img.role, err)
		}
		archive, err := ociArchive(img, l)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.role, err)
		}
		if err := os.WriteFile(filepath.Join(out, img.role+".tar"), archive, 0o644); err != nil {
			return err
		}
		fmt.Printf("image %s=%s\n", img.role, img.ref)
	}
	return nil
}

// webhookRoot is valkey-webhook's root filesystem, like the Dockerfile's
// distroless static nonroot base (passwd, group, /tmp, CA roots), with bin.
func webhookRoot(l *layer, bin string) error {
	l.etc(map[string]int{"nonroot": 65532})
	l.dir("/home/nonroot", 0o700, 65532)
	if err := l.fileIfExists("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644); err != nil {
		return err
	}
	return l.file("/valkey-webhook", bin, 0o755)
}

// The test variant valkey-webhook:comment-changed is this checkout's
// valkey-webhook with one change: the first comment line of the valkey.conf it
// renders. It stands for a release that words its rendering differently and
// makes the same settings; test/realnode upgrades to it and sees no pod roll.
const (
	renderedComment = `line("# Rendered by valkey-webhook from its policy and the StatefulSet's")`
	variantComment  = `line("# Rendered by valkey-webhook (test variant: comment changed) from its policy and the StatefulSet's")`
)

// commentVariantOverlay writes the variant's defaults/valkeyconf.go and a
// `go build -overlay` file that puts it in place of the checkout's, into dir,
// and returns the overlay file's path.
func commentVariantOverlay(repo, dir string) (string, error) {
	src, err := filepath.Abs(filepath.Join(repo, "defaults", "valkeyconf.go"))
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	if n := strings.Count(string(b), renderedComment); n != 1 {
		return "", fmt.Errorf("%s: the comment line the test variant changes, %s, is there %d times, not once: update renderedComment in hack/node/images", src, renderedComment, n)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	variant := filepath.Join(dir, "valkeyconf-comment-changed.go")
	if err := os.WriteFile(variant, []byte(strings.Replace(string(b), renderedComment, variantComment, 1)), 0o644); err != nil {
		return "", err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {src: variant}})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "comment-changed-overlay.json")
	return path, os.WriteFile(path, overlay, 0o644)
}

// debianValkeyVersion is the version of the valkey-server the image copies, from its
// own --version ("Valkey server v=8.0.1 ...").
func debianValkeyVersion() (string, error) {
	out, err := exec.Command("valkey-server", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("valkey-server --version: %w (install valkey-server from bookworm-backports)", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("valkey-server --version printed %q: no v=", out)
}

// entry is one file, directory or symlink of a layer.
type entry struct {
	typ      byte
	mode     int64
	uid      int
	data     []byte
	linkname string
}

type layer struct{ entries map[string]entry }

func newLayer() *layer { return &layer{entries: map[string]entry{}} }

func (l *layer) dir(p string, mode int64, uid int) {
	for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = entry{typ: tar.TypeDir, mode: 0o755}
		}
	}
	l.entries[p] = entry{typ: tar.TypeDir, mode: mode, uid: uid}
}

func (l *layer) parent(p string) {
	if d := path.Dir(p); d != "/" {
		if _, ok := l.entries[d]; !ok {
			l.dir(d, 0o755, 0)
		}
	}
}

func (l *layer) text(p, content string, mode int64) {
	l.parent(p)
	l.entries[p] = entry{typ: tar.TypeReg, mode: mode, data: []byte(content)}
}

func (l *layer) symlink(p, target string) {
	l.parent(p)
	l.entries[p] = entry{typ: tar.TypeSymlink, mode: 0o777, linkname: target}
}

// file copies the host file src to p; a symlink on the host stays a symlink when it
// points into the same directory (valkey-server -> valkey-check-rdb).
func (l *layer) file(p, src string, mode int64) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if !strings.Contains(target, "/") {
			l.symlink(p, target)
			return l.file(path.Join(path.Dir(p), target), filepath.Join(filepath.Dir(src), target), mode)
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	l.parent(p)
	l.entries[p] = entry{typ: tar.TypeReg, mode: mode, data: data}
	return nil
}

func (l *layer) fileIfExists(p, src string, mode int64) error {
	if _, err := os.Stat(src); os.IsNotExist(err) {
		return nil
	}
	return l.file(p, src, mode)
}

// elf copies dynamically linked programs with every shared library ldd names, at the
// paths ldd gives.
func (l *layer) elf(progs ...string) error {
	for _, prog := range progs {
		if err := l.file(prog, prog, 0o755); err != nil {
			return err
		}
		out, err := exec.Command("ldd", prog).Output()
		if err != nil {
			return fmt.Errorf("ldd %s: %w", prog, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			var lib string
			switch {
			case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
				lib = f[2]
			case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
				lib = f[0]
			default:
				continue
			}
			real, err := filepath.EvalSymlinks(lib)
			if err != nil {
				return err
			}
			if err := l.file(lib, real, 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}

// busybox adds Debian's static busybox with a link for each applet the probes,
// the provisioner's helper pod and the tests use, /tmp, and the /usr/bin and /bin
// directories.
func (l *layer) busybox() error {
	if err := l.file("/bin/busybox", "/bin/busybox", 0o755); err != nil {
		return fmt.Errorf("%w (install busybox-static)", err)
	}
	for _, a := range []string{"sh", "cat", "grep", "ls", "id", "mkdir", "rm", "rmdir", "sleep", "echo", "test",
		"stat", "head", "tail", "tr", "cut", "wc", "nc", "nslookup", "env", "ps", "timeout", "sed", "awk", "printf", "true", "false", "touch", "chmod", "date", "hostname", "wget"} {
		l.symlink("/bin/"+a, "busybox")
	}
	return nil
}

// etc writes /etc/passwd and /etc/group with root, nobody and the given users (each
// with a group of its own id), and /tmp.
func (l *layer) etc(users map[string]int) {
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
	group := "root:x:0:\nnobody:x:65534:\n"
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		id := users[n]
		passwd += fmt.Sprintf("%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", n, id, id, n, n)
		group += fmt.Sprintf("%s:x:%d:\n", n, id)
	}
	l.text("/etc/passwd", passwd, 0o644)
	l.text("/etc/group", group, 0o644)
	l.dir("/tmp", 0o1777, 0)
}

// tarball writes the entries in path order with fixed times and owners.
func (l *layer) tarball() ([]byte, error) {
	paths := make([]string, 0, len(l.entries))
	for p := range l.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := l.entries[p]
		h := &tar.Header{Typeflag: e.typ, Name: strings.TrimPrefix(p, "/"), Mode: e.mode, Uid: e.uid, Gid: e.uid, Linkname: e.linkname, Format: tar.FormatPAX}
		if e.typ == tar.TypeDir {
			h.Name += "/"
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

// ociArchive is an OCI image layout as one tar: oci-layout, index.json naming the
// image (io.containerd.image.name, which ctr import reads), and the blobs.
func ociArchive(img image, l *layer) ([]byte, error) {
	layerTar, err := l.tarball()
	if err != nil {
		return nil, err
	}
	blobs := map[string][]byte{}
	add := func(mediaType string, data []byte) descriptor {
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = data
		return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
	}
	layerDesc := add("application/vnd.oci.image.layer.v1.tar", layerTar)
	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Entrypoint": img.entrypoint,
			"Cmd":        img.cmd,
			"User":       img.user,
			"Env":        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	configDesc := add("application/vnd.oci.image.config.v1+json", configJSON)
	manifestJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	manifestDesc := add("application/vnd.oci.image.manifest.v1+json", manifestJSON)
	manifestDesc.Platform = map[string]string{"architecture": "amd64", "os": "linux"}
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name":          img.ref,
		"org.opencontainers.image.ref.name": img.ref[strings.LastIndex(img.ref, ":")+1:],
	}
	indexJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{manifestDesc},
	})
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := write("index.json", indexJSON); err != nil {
		return nil, err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := write("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
