package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// FixtureInitMarker is printed by the fixture images' /sbin/init, followed
// by " image=<tag>", so a VM test can tell which image it booted.
const FixtureInitMarker = "DOCKROOT-FIXTURE-INIT"

// Fixtures are the images MakeFixtures builds into a private dockerd, with
// no registry: references as a user would type them, and their image IDs.
type Fixtures struct {
	Base     string // "dockroot-test/base:1": docker import of a busybox-static rootfs
	Desk1    string // "desk:1": legacy-builder image FROM Base, one layer per step
	Desk2    string // "desk:2": FROM Desk1 with different content
	Latest   string // "desk": desk:latest, another name for Desk2
	Registry string // "registry.example:5000/team/desk:1": another name for Desk1
	Zero     string // "zero:1": FROM scratch with only a LABEL, so no layers
	// Digested is Desk2 pulled by digest from an in-process registry,
	// "127.0.0.1:<port>/fixture/desk@sha256:<manifest digest>", so the
	// store holds a real digest reference.
	Digested string
	IDs      map[string]string // each reference above -> "sha256:<64 hex>"
	// Tags is every tag `docker images` lists, familiar form, sorted.
	Tags []string
	// Timings of the build steps, for reports; never asserted.
	Timings map[string]time.Duration
}

// Refs returns the fixture references that resolve to a bootable image.
func (f Fixtures) Refs() []string {
	return []string{f.Base, f.Desk1, f.Desk2, f.Latest, f.Registry, f.Digested}
}

// BuildFixtures builds the fixture images into d (see MakeFixtures), failing
// t on error.
func (d *Dockerd) BuildFixtures(t testing.TB) Fixtures {
	t.Helper()
	start := time.Now()
	f, err := d.MakeFixtures(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fixtures built in %v: %v", time.Since(start).Round(time.Millisecond), f.Timings)
	return f
}

// MakeFixtures builds the fixture images into d, using workDir for the
// rootfs and build contexts. It needs /bin/busybox from Debian's
// busybox-static (a static binary, so the images need no libc).
func (d *Dockerd) MakeFixtures(workDir string) (Fixtures, error) {
	f := Fixtures{
		Base:     "dockroot-test/base:1",
		Desk1:    "desk:1",
		Desk2:    "desk:2",
		Latest:   "desk",
		Registry: "registry.example:5000/team/desk:1",
		Zero:     "zero:1",
		IDs:      map[string]string{},
		Timings:  map[string]time.Duration{},
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"import base", func() error { return d.importBase(filepath.Join(workDir, "rootfs"), f.Base) }},
		{"build desk:1", func() error {
			return d.build(filepath.Join(workDir, "desk1"), f.Desk1, deskDockerfile(f.Base, f.Desk1), map[string]fileSpec{
				"suid": {mode: 0o4755, data: "#!/bin/sh\nid\n"},
			})
		}},
		{"build desk:2", func() error {
			return d.build(filepath.Join(workDir, "desk2"), f.Desk2, fmt.Sprintf(
				"FROM %s\nRUN echo %s > /etc/fixture-image && echo second > /opt/desk/second\n", f.Desk1, f.Desk2), nil)
		}},
		{"tag registry-style name and latest", func() error {
			if _, err := d.Run(nil, "tag", f.Desk1, f.Registry); err != nil {
				return err
			}
			_, err := d.Run(nil, "tag", f.Desk2, f.Latest)
			return err
		}},
		{"build zero-layer image", func() error {
			// The legacy builder accepts FROM scratch with only metadata
			// instructions and commits an image whose rootfs has no diff_ids.
			return d.build(filepath.Join(workDir, "zero"), f.Zero, "FROM scratch\nLABEL dockroot.fixture=zero\n", nil)
		}},
		{"pull by digest", func() (err error) { f.Digested, err = d.pullByDigest(f.Desk2, "fixture/desk"); return err }},
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.run(); err != nil {
			return f, fmt.Errorf("fixtures: %s: %w", s.name, err)
		}
		f.Timings[s.name] = time.Since(start).Round(time.Millisecond)
	}
	for _, ref := range append(f.Refs(), f.Zero) {
		id, err := d.Run(nil, "image", "inspect", "--format", "{{.Id}}", ref)
		if err != nil {
			return f, fmt.Errorf("fixtures: %w", err)
		}
		f.IDs[ref] = strings.TrimSpace(id)
	}
	out, err := d.Run(nil, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		return f, fmt.Errorf("fixtures: %w", err)
	}
	for _, line := range strings.Fields(out) {
		if !strings.HasSuffix(line, ":<none>") {
			f.Tags = append(f.Tags, line)
		}
	}
	sort.Strings(f.Tags)
	return f, nil
}

// deskDockerfile makes one layer per step: a file tree, deletions of a
// file, a directory and a base-image file (whiteouts), a hard link, a
// setuid file and a marker naming the image.
func deskDockerfile(base, tag string) string {
	return strings.Join([]string{
		"FROM " + base,
		"RUN mkdir -p /opt/desk/gone /var/tmp && echo one > /opt/desk/one && echo two > /opt/desk/two && echo x > /opt/desk/gone/x && ln -s one /opt/desk/link",
		"RUN rm /opt/desk/two /bin/touch && rm -r /opt/desk/gone && ln /opt/desk/one /opt/desk/hard",
		"RUN echo " + tag + " > /etc/fixture-image",
		"COPY suid /usr/bin/suid",
		"RUN chmod 4755 /usr/bin/suid",
		"",
	}, "\n")
}

type fileSpec struct {
	mode os.FileMode
	data string
}

func (d *Dockerd) build(dir, tag, dockerfile string, files map[string]fileSpec) error {
	if err := writeContext(dir, dockerfile, files); err != nil {
		return err
	}
	_, err := d.Run(nil, "build", "--quiet", "--tag", tag, dir)
	return err
}

// writeContext writes a build context: the Dockerfile and files.
func writeContext(dir, dockerfile string, files map[string]fileSpec) error {
	files = mapsWith(files, "Dockerfile", fileSpec{mode: 0o644, data: dockerfile})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, s := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s.data), 0o644); err != nil {
			return err
		}
		// WriteFile's mode is filtered by the umask and drops setuid.
		if err := os.Chmod(p, s.mode); err != nil {
			return err
		}
	}
	return nil
}

func mapsWith(m map[string]fileSpec, k string, v fileSpec) map[string]fileSpec {
	out := map[string]fileSpec{k: v}
	for mk, mv := range m {
		out[mk] = mv
	}
	return out
}

// importBase makes a tiny busybox-static rootfs and imports it as ref.
func (d *Dockerd) importBase(root, ref string) error {
	buf, err := baseTar(root)
	if err != nil {
		return err
	}
	_, err = d.Run(buf, "import", "--change", `CMD ["/sbin/init"]`, "-", ref)
	return err
}

// baseTar makes a tiny busybox-static rootfs in root and returns it as a
// tar stream: the base every engine's fixtures import.
func baseTar(root string) (*bytes.Buffer, error) {
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("read /bin/busybox (install busybox-static): %w", err)
	}
	dirs := []string{"bin", "sbin", "etc", "tmp", "root", "proc", "sys", "dev", "run"}
	for _, dir := range dirs {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), busybox, 0o755); err != nil {
		return nil, err
	}
	for _, applet := range []string{"sh", "ls", "cat", "echo", "rm", "mkdir", "chmod", "touch", "ln", "id", "mount"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			return nil, err
		}
	}
	for _, applet := range []string{"poweroff", "reboot"} {
		if err := os.Symlink("../bin/busybox", filepath.Join(root, "sbin", applet)); err != nil {
			return nil, err
		}
	}
	// As PID 1 the script powers the machine off after the marker, so a VM
	// test ends on its own; exiting PID 1 would panic the kernel instead.
	init := "#!/bin/sh\necho " + FixtureInitMarker + " image=$(cat /etc/fixture-image 2>/dev/null || echo base)\n" +
		"[ $$ = 1 ] && exec /bin/busybox poweroff -f\nexit 0\n"
	files := map[string]string{
		"sbin/init":  init,
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(root, "sbin/init"), 0o755); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tarDir(&buf, root); err != nil {
		return nil, fmt.Errorf("tar %s: %w", root, err)
	}
	return &buf, nil
}

// tarDir writes the tree under root as a tar stream owned by root:root.
func tarDir(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, h.Uid, h.Gid, h.Uname, h.Gname = rel, 0, 0, "root", "root"
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// pullByDigest serves ref from a minimal in-process registry (the v2 API
// read paths dockerd uses) on 127.0.0.1, which dockerd treats as an
// insecure registry by default, and pulls it by manifest digest as
// 127.0.0.1:<port>/<repo>@sha256:…. That is the only way to get a digest
// reference into the store without a real registry: docker load and
// docker tag never record one.
func (d *Dockerd) pullByDigest(ref, repo string) (string, error) {
	var saved bytes.Buffer
	cmd := d.Command("save", ref)
	cmd.Stdout = &saved
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker save %s: %w: %s", ref, err, stderr.String())
	}
	manifest, blobs, err := registryContent(saved.Bytes())
	if err != nil {
		return "", fmt.Errorf("docker save %s: %w", ref, err)
	}
	sum := sha256.Sum256(manifest)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: registryHandler(repo, digest, manifest, blobs)}
	go srv.Serve(ln)
	defer srv.Close()

	pinned := fmt.Sprintf("%s/%s@%s", ln.Addr().String(), repo, digest)
	if _, err := d.Run(nil, "pull", "--quiet", pinned); err != nil {
		return "", err
	}
	return pinned, nil
}

const (
	mediaManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaConfig   = "application/vnd.docker.container.image.v1+json"
	mediaLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// registryContent turns `docker save` output into a schema-2 manifest and
// the blobs it names (config and gzipped layers) by digest.
func registryContent(saved []byte) ([]byte, map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(saved))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, nil, err
			}
			files[h.Name] = data
		}
	}
	var index []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(files["manifest.json"], &index); err != nil || len(index) != 1 {
		return nil, nil, fmt.Errorf("manifest.json: want one image, got %d (%v)", len(index), err)
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Size      int    `json:"size"`
		Digest    string `json:"digest"`
	}
	blobs := map[string][]byte{}
	add := func(media string, data []byte) desc {
		sum := sha256.Sum256(data)
		dg := "sha256:" + hex.EncodeToString(sum[:])
		blobs[dg] = data
		return desc{MediaType: media, Size: len(data), Digest: dg}
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{SchemaVersion: 2, MediaType: mediaManifest, Config: add(mediaConfig, files[index[0].Config])}
	for _, l := range index[0].Layers {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		if _, err := zw.Write(files[l]); err != nil {
			return nil, nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, nil, err
		}
		m.Layers = append(m.Layers, add(mediaLayer, gz.Bytes()))
	}
	manifest, err := json.Marshal(m)
	return manifest, blobs, err
}

func registryHandler(repo, digest string, manifest []byte, blobs map[string][]byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		prefix := "/v2/" + repo + "/"
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == prefix+"manifests/"+digest:
			w.Header().Set("Content-Type", mediaManifest)
			w.Header().Set("Docker-Content-Digest", digest)
			w.Header().Set("Content-Length", fmt.Sprint(len(manifest)))
			w.Write(manifest)
		case strings.HasPrefix(r.URL.Path, prefix+"blobs/") && blobs[strings.TrimPrefix(r.URL.Path, prefix+"blobs/")] != nil:
			dg := strings.TrimPrefix(r.URL.Path, prefix+"blobs/")
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Docker-Content-Digest", dg)
			w.Header().Set("Content-Length", fmt.Sprint(len(blobs[dg])))
			w.Write(blobs[dg])
		default:
			http.NotFound(w, r)
		}
	})
}
