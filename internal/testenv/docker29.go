package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Docker 29 pair the containerd-store tests run: Debian has no Docker
// 29, so dockerd and containerd are built from the Go module proxy, once
// per machine, into the machine-wide cache keyed by their versions.
const (
	MobyVersion       = "v2.0.0-beta.24" // github.com/moby/moby/v2: dockerd 29
	ContainerdVersion = "v2.4.2"         // github.com/containerd/containerd/v2
)

// Docker29Config is the daemon.json that gives Docker 29's containerd
// image store with containerd's btrfs snapshotter: the store dockroot's
// snapshot/containerd reads. ("storage-driver": "btrfs" alone would keep
// the classic graphdriver store.)
const Docker29Config = `{"storage-driver": "btrfs", "features": {"containerd-snapshotter": true}}` + "\n"

// Docker29Bins are the built binaries: Dockerd is dockerd's path,
// ContainerdDir the directory holding containerd and
// containerd-shim-runc-v2, which goes first on dockerd's PATH so that it
// starts that containerd as its managed one.
type Docker29Bins struct {
	Dockerd       string
	ContainerdDir string
	// Built says how long each build took on this call, empty when both
	// were cached.
	Built map[string]time.Duration
}

// Docker29 returns the Docker 29 binaries, building them on first use
// into cacheDir/daemons/moby-<version> and cacheDir/daemons/containerd-<version>
// with go install (cgo on: the btrfs snapshotter and graphdriver need it).
// Each build goes into a temporary directory that is renamed into place
// when complete, under a lock, so two test binaries never build twice or
// see half a build. Heavy builds run under vmslot when it is on PATH (it
// holds one of the machine's build slots). The first build takes about 6
// (dockerd) and 2 (containerd) minutes on two cores.
func Docker29(cacheDir string) (*Docker29Bins, error) {
	dir := filepath.Join(cacheDir, "daemons")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	bins := &Docker29Bins{Built: map[string]time.Duration{}}
	builds := []struct {
		name string
		pkgs []string
		want []string
	}{
		{"containerd-" + ContainerdVersion, []string{
			"github.com/containerd/containerd/v2/cmd/containerd@" + ContainerdVersion,
			"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@" + ContainerdVersion,
		}, []string{"containerd", "containerd-shim-runc-v2"}},
		{"moby-" + MobyVersion, []string{"github.com/moby/moby/v2/cmd/dockerd@" + MobyVersion}, []string{"dockerd"}},
	}
	for _, b := range builds {
		out := filepath.Join(dir, b.name)
		if !haveAll(out, b.want) {
			start := time.Now()
			if err := goInstall(dir, out, b.pkgs); err != nil {
				return nil, err
			}
			bins.Built[b.name] = time.Since(start).Round(time.Second)
		}
	}
	bins.ContainerdDir = filepath.Join(dir, builds[0].name)
	bins.Dockerd = filepath.Join(dir, builds[1].name, "dockerd")
	return bins, nil
}

// Docker29Built returns the Docker 29 binaries Docker29 built into
// cacheDir, without building them: the error says what is missing and how
// to build it. Tests that must not spend a build's minutes inside their
// timeout (the VM tier) skip on it.
func Docker29Built(cacheDir string) (*Docker29Bins, error) {
	dir := filepath.Join(cacheDir, "daemons")
	bins := &Docker29Bins{
		ContainerdDir: filepath.Join(dir, "containerd-"+ContainerdVersion),
		Dockerd:       filepath.Join(dir, "moby-"+MobyVersion, "dockerd"),
	}
	if !haveAll(bins.ContainerdDir, []string{"containerd", "containerd-shim-runc-v2"}) || !haveAll(filepath.Dir(bins.Dockerd), []string{"dockerd"}) {
		return nil, fmt.Errorf("docker 29 (dockerd %s, containerd %s) is not built in %s; run `make daemons` (or `make fixtures`)", MobyVersion, ContainerdVersion, dir)
	}
	return bins, nil
}

// SystemContainerd says whether a system containerd listens where dockerd
// looks for one: a Docker 29 started here would use it instead of its own
// managed containerd, and keep its images in the system's containerd root.
func SystemContainerd() (string, bool) {
	_, err := os.Lstat(systemContainerdSocket)
	return systemContainerdSocket, err == nil
}

func haveAll(dir string, names []string) bool {
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// goInstall runs go install pkgs with GOBIN a temporary directory beside
// out, then renames it to out.
func goInstall(dir, out string, pkgs []string) error {
	tmp, err := os.MkdirTemp(dir, ".build-"+filepath.Base(out)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtimeGOROOT(), "bin", "go")
	}
	argv := append([]string{gobin, "install"}, pkgs...)
	if slot, err := exec.LookPath("vmslot"); err == nil {
		argv = append([]string{slot}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	// GOFLAGS is cleared so that a caller's -mod=... does not apply to
	// modules installed by version.
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=1", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %s: %w\n%s", filepath.Base(out), strings.Join(argv, " "), err, b)
	}
	os.RemoveAll(out) // an incomplete earlier build
	return os.Rename(tmp, out)
}

// Docker29MinAPI is the oldest API version the test Docker 29 accepts:
// 1.24 instead of its default, so that any docker CLI on PATH drives it,
// including Debian's docker.io 20.10 (API 1.41). A docker CLI 29 cannot
// be built from the module proxy (github.com/docker/cli has no go.mod,
// and go install resolves its dependencies to incompatible versions), so
// the daemon is told to accept the CLI the distribution ships.
const Docker29MinAPI = "1.24"

// StartDocker29Process starts the Docker 29 dockerd of bins with its own
// managed containerd (bins' containerd first on its PATH) and the
// containerd image store with the btrfs snapshotter (Docker29Config) on
// dataRoot: its containerd root is dataRoot/containerd/daemon. Its socket,
// pid file and exec root are private, like StartDockerdProcess's; no
// networking is set up. Call Stop when done.
func StartDocker29Process(bins *Docker29Bins, dataRoot, workDir string) (*Dockerd, error) {
	return startDockerd(dockerdSpec{
		dataRoot: dataRoot, workDir: workDir,
		binary: bins.Dockerd, config: Docker29Config,
		pathPrefix: bins.ContainerdDir, ownContainerd: true,
		env: []string{"DOCKER_MIN_API_VERSION=" + Docker29MinAPI},
	})
}

// StartDocker29 builds (once per machine) and starts a private Docker 29
// on dataRoot (see StartDocker29Process), stopping it in t's cleanup. The
// cache is $DOCKROOT_CACHE, else /var/cache/dockroot.
func StartDocker29(t testing.TB, dataRoot string) *Dockerd {
	t.Helper()
	RequireRoot(t, "docker", "go", "gcc")
	if _, err := os.Lstat(systemContainerdSocket); err == nil {
		t.Skipf("a system containerd listens on %s: dockerd 29 would use it instead of its own containerd 2.4", systemContainerdSocket)
	}
	cache := os.Getenv("DOCKROOT_CACHE")
	if cache == "" {
		cache = "/var/cache/dockroot"
	}
	bins, err := Docker29(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(bins.Built) > 0 {
		t.Logf("built Docker 29 into %s: %v", cache, bins.Built)
	}
	d, err := StartDocker29Process(bins, dataRoot, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dockerd 29 log tail (%s):\n%s", d.Log, d.LogTail(30))
		}
		if err := d.Stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return d
}

func runtimeGOROOT() string { return runtime.GOROOT() }
