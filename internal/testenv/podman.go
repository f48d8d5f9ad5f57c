package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Podman is Debian's rootful podman (4.3.1) confined to a graph root of
// its own with the btrfs storage driver: its storage.conf, containers.conf
// and registries.conf are private files (CONTAINERS_STORAGE_CONF,
// CONTAINERS_CONF, CONTAINERS_REGISTRIES_CONF), and its run root and libpod
// tmp dir are private directories, so the host's store and settings are
// never read or touched. Podman has no daemon: each call runs the CLI.
type Podman struct {
	Root    string // graph root (--root)
	RunRoot string // --runroot
	runDir  string // short private directory holding RunRoot and the tmp dir
	env     []string
}

// NewPodmanProcess sets up podman with the btrfs driver on graphRoot,
// keeping its configuration in workDir. Call Stop when done.
func NewPodmanProcess(graphRoot, workDir string) (*Podman, error) {
	return NewPodmanDriver(graphRoot, workDir, "btrfs")
}

// NewPodmanDriver is NewPodmanProcess with another storage driver, for
// tests of what dockroot says about stores it cannot read.
func NewPodmanDriver(graphRoot, workDir, driver string) (*Podman, error) {
	for _, dir := range []string{graphRoot, workDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("set up podman: %w", err)
		}
	}
	runDir, err := os.MkdirTemp("", "pdm-")
	if err != nil {
		return nil, fmt.Errorf("set up podman: %w", err)
	}
	p := &Podman{Root: graphRoot, RunRoot: filepath.Join(runDir, "run"), runDir: runDir}
	files := map[string]string{
		"storage.conf": fmt.Sprintf("[storage]\ndriver = %q\nrunroot = %q\ngraphroot = %q\n", driver, p.RunRoot, graphRoot),
		// cgroupfs and file events: no systemd or journald needed.
		"containers.conf": fmt.Sprintf("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = %q\n",
			filepath.Join(runDir, "tmp")),
		// No search registries: a short name must never reach a network.
		"registries.conf": "unqualified-search-registries = []\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(workDir, name), []byte(data), 0o644); err != nil {
			os.RemoveAll(runDir)
			return nil, fmt.Errorf("set up podman: %w", err)
		}
	}
	p.env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + workDir,
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(workDir, "storage.conf"),
		"CONTAINERS_CONF=" + filepath.Join(workDir, "containers.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(workDir, "registries.conf"),
	}
	return p, nil
}

// NewPodman sets up podman with the btrfs driver on graphRoot (see
// NewPodmanProcess) and stops it in t's cleanup.
func NewPodman(t testing.TB, graphRoot string) *Podman {
	t.Helper()
	return NewPodmanT(t, graphRoot, "btrfs")
}

// NewPodmanT is NewPodman with another storage driver.
func NewPodmanT(t testing.TB, graphRoot, driver string) *Podman {
	t.Helper()
	RequireRoot(t, "podman")
	p, err := NewPodmanDriver(graphRoot, t.TempDir(), driver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return p
}

// Stop ends any process podman left using its private directories
// (conmon of a container that was started), unmounts what it mounted below
// the graph root and run root, and removes the run directory, so the loop
// btrfs under the graph root can be unmounted.
func (p *Podman) Stop() error {
	var errs []error
	if err := killUsers(p.runDir); err != nil {
		errs = append(errs, err)
	}
	if err := unmountBelow(p.Root, p.runDir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(p.runDir); err != nil {
		errs = append(errs, fmt.Errorf("stop podman: %w", err))
	}
	return errors.Join(errs...)
}

// Command returns the podman CLI with args, confined to this store.
func (p *Podman) Command(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", append([]string{"--root", p.Root, "--runroot", p.RunRoot}, args...)...)
	cmd.Env = p.env
	return cmd
}

// Run runs podman with args and stdin (may be nil) and returns its stdout;
// the error names the argv and carries stderr.
func (p *Podman) Run(stdin io.Reader, args ...string) (string, error) {
	cmd := p.Command(args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Podman runs podman with args and returns its stdout without surrounding
// space, failing t with the argv and stderr on error.
func (p *Podman) Podman(t testing.TB, args ...string) string {
	t.Helper()
	out, err := p.Run(nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// PodmanFixtures are the images MakeFixtures builds into a private podman
// store, with no registry. Podman stores a short name under localhost/, so
// the tags are "localhost/desk:1" where Docker's are "desk:1".
type PodmanFixtures struct {
	Base     string // "dockroot-test/base:1": podman import of a busybox-static rootfs
	Desk1    string // "desk:1": built FROM Base, one layer per step
	Desk2    string // "desk:2": FROM Desk1 with different content
	Latest   string // "desk": localhost/desk:latest, another name for Desk2
	Registry string // "registry.example:5000/team/desk:1": another name for Desk1
	Hub      string // "docker.io/library/hub:1": a Docker Hub-style name for Desk1
	Zero     string // "zero:1": FROM scratch with only a LABEL, so no layers
	// Digested is "localhost/desk@<manifest digest of Desk2>", the digest
	// podman images --digests shows.
	Digested string
	IDs      map[string]string // each reference above -> "sha256:<64 hex>"
	// Tags is every tag `podman images` lists ("localhost/desk:1"), sorted.
	Tags    []string
	Timings map[string]time.Duration
}

// BuildFixtures builds the fixture images into p, failing t on error.
func (p *Podman) BuildFixtures(t testing.TB) PodmanFixtures {
	t.Helper()
	start := time.Now()
	f, err := p.MakeFixtures(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("podman fixtures built in %v: %v", time.Since(start).Round(time.Millisecond), f.Timings)
	return f
}

// MakeFixtures builds the fixture images into p, using workDir for the
// rootfs and build contexts; the same content as Dockerd.MakeFixtures.
// Builds run with --network none: nothing is fetched.
func (p *Podman) MakeFixtures(workDir string) (PodmanFixtures, error) {
	f := PodmanFixtures{
		Base:     "dockroot-test/base:1",
		Desk1:    "desk:1",
		Desk2:    "desk:2",
		Latest:   "desk",
		Registry: "registry.example:5000/team/desk:1",
		Hub:      "docker.io/library/hub:1",
		Zero:     "zero:1",
		IDs:      map[string]string{},
		Timings:  map[string]time.Duration{},
	}
	build := func(dir, tag, dockerfile string, files map[string]fileSpec) error {
		if err := writeContext(dir, dockerfile, files); err != nil {
			return err
		}
		_, err := p.Run(nil, "build", "--quiet", "--network", "none", "--tag", tag, dir)
		return err
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"import base", func() error {
			buf, err := baseTar(filepath.Join(workDir, "rootfs"))
			if err != nil {
				return err
			}
			_, err = p.Run(buf, "import", "--change", `CMD ["/sbin/init"]`, "-", f.Base)
			return err
		}},
		{"build desk:1", func() error {
			return build(filepath.Join(workDir, "desk1"), f.Desk1, deskDockerfile(f.Base, f.Desk1), map[string]fileSpec{
				"suid": {mode: 0o4755, data: "#!/bin/sh\nid\n"},
			})
		}},
		{"build desk:2", func() error {
			return build(filepath.Join(workDir, "desk2"), f.Desk2, fmt.Sprintf(
				"FROM %s\nRUN echo %s > /etc/fixture-image && echo second > /opt/desk/second\n", f.Desk1, f.Desk2), nil)
		}},
		{"tag other names", func() error {
			for _, tt := range [][2]string{{f.Desk1, f.Registry}, {f.Desk1, f.Hub}, {f.Desk2, f.Latest}} {
				if _, err := p.Run(nil, "tag", tt[0], tt[1]); err != nil {
					return err
				}
			}
			return nil
		}},
		{"build zero-layer image", func() error {
			// buildah commits FROM scratch with only metadata as an image
			// with no layer at all.
			return build(filepath.Join(workDir, "zero"), f.Zero, "FROM scratch\nLABEL dockroot.fixture=zero\n", nil)
		}},
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.run(); err != nil {
			return f, fmt.Errorf("podman fixtures: %s: %w", s.name, err)
		}
		f.Timings[s.name] = time.Since(start).Round(time.Millisecond)
	}
	for _, ref := range []string{f.Base, f.Desk1, f.Desk2, f.Latest, f.Registry, f.Hub, f.Zero} {
		id, err := p.Run(nil, "image", "inspect", "--format", "{{.Id}}", ref)
		if err != nil {
			return f, fmt.Errorf("podman fixtures: %w", err)
		}
		f.IDs[ref] = "sha256:" + strings.TrimSpace(id)
	}
	digest, err := p.Run(nil, "image", "inspect", "--format", "{{.Digest}}", f.Desk2)
	if err != nil {
		return f, fmt.Errorf("podman fixtures: %w", err)
	}
	f.Digested = "localhost/desk@" + strings.TrimSpace(digest)
	f.IDs[f.Digested] = f.IDs[f.Desk2]
	out, err := p.Run(nil, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		return f, fmt.Errorf("podman fixtures: %w", err)
	}
	for _, line := range strings.Fields(out) {
		if !strings.Contains(line, "<none>") {
			f.Tags = append(f.Tags, line)
		}
	}
	sort.Strings(f.Tags)
	return f, nil
}

// Export returns the filesystem of a container created from ref, as
// `podman export` writes it.
func (p *Podman) Export(t testing.TB, ref string) []byte {
	t.Helper()
	id := p.Podman(t, "create", "--network", "none", ref)
	defer p.Podman(t, "rm", id)
	var out, stderr bytes.Buffer
	cmd := p.Command("export", id)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman export %s: %v: %s", id, err, stderr.String())
	}
	return out.Bytes()
}
