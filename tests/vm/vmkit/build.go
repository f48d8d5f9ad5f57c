package vmkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/internal/testenv"
)

// DiskSpec describes a btrfs boot disk holding a Docker data root.
type DiskSpec struct {
	SizeMB     int    // sparse; default 2048
	Label      string // filesystem label, for root=LABEL=
	DockerPath string // data root relative to the top level, for docker_path=
	// Images builds the images with the private dockerd running on the disk.
	Images func(d *testenv.Dockerd) error
	// Docker29, when set, makes that dockerd these Docker 29 binaries with
	// the containerd image store and containerd's btrfs snapshotter
	// (testenv.StartDocker29Process) instead of Debian's classic dockerd:
	// the images land under DockerPath/containerd/daemon, where Docker's
	// managed containerd keeps its root. Images must leave each image
	// unpacked (docker create), as docker run does.
	Docker29 *testenv.Docker29Bins
	// PodmanPath is rootful Podman's graph root relative to the top level,
	// for podman_path=; PodmanImages builds images into it with podman's
	// btrfs driver.
	PodmanPath   string
	PodmanImages func(p *testenv.Podman) error
	// Files are written relative to the top level after dockerd stopped
	// (the top layer, e.g. "boot_docker/etc/hostname").
	Files []File
}

// BuildDisk creates the disk image at path: mkfs.btrfs, mount, a private
// dockerd with its data root on it to build the images, the files, and
// then everything stopped, unmounted and detached again, so that a VM can
// use the image. On failure the partial image is removed.
func BuildDisk(path string, spec DiskSpec) (err error) {
	if spec.SizeMB == 0 {
		spec.SizeMB = 2048
	}
	if err := MakeImage(path, spec.SizeMB, "btrfs", spec.Label, ""); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	return WithMounted(path, "btrfs", func(top string) error {
		if spec.Images != nil {
			dataRoot := filepath.Join(top, filepath.FromSlash(spec.DockerPath))
			if err := os.MkdirAll(dataRoot, 0o710); err != nil {
				return err
			}
			work, err := os.MkdirTemp("", "vmkit-dockerd-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			start := testenv.StartDockerdProcess
			if spec.Docker29 != nil {
				start = func(dataRoot, work string) (*testenv.Dockerd, error) {
					return testenv.StartDocker29Process(spec.Docker29, dataRoot, work)
				}
			}
			d, err := start(dataRoot, work)
			if err != nil {
				return err
			}
			buildErr := spec.Images(d)
			if stopErr := d.Stop(); stopErr != nil {
				if buildErr != nil {
					fmt.Fprintf(os.Stderr, "vmkit: stop dockerd: %v\n", stopErr)
				} else {
					return fmt.Errorf("stop the private dockerd: %w", stopErr)
				}
			}
			if buildErr != nil {
				return fmt.Errorf("build images on %s: %w\ndockerd log tail:\n%s", path, buildErr, d.LogTail(20))
			}
		}
		if spec.PodmanImages != nil {
			if err := buildPodmanImages(top, path, spec); err != nil {
				return err
			}
		}
		return WriteFiles(top, spec.Files)
	})
}

// buildPodmanImages runs spec.PodmanImages with podman's graph root at
// spec.PodmanPath on the mounted disk top.
func buildPodmanImages(top, path string, spec DiskSpec) error {
	work, err := os.MkdirTemp("", "vmkit-podman-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	p, err := testenv.NewPodmanProcess(filepath.Join(top, filepath.FromSlash(spec.PodmanPath)), work)
	if err != nil {
		return err
	}
	buildErr := spec.PodmanImages(p)
	if stopErr := p.Stop(); stopErr != nil && buildErr == nil {
		return fmt.Errorf("stop podman: %w", stopErr)
	}
	if buildErr != nil {
		return fmt.Errorf("build podman images on %s: %w", path, buildErr)
	}
	return nil
}

// WithMounted mounts image on a temporary directory, runs fn with the mount
// point (btrfs at its top level) and unmounts and detaches it again. Use it
// to inspect a disk after QEMU has exited, never while it runs.
func WithMounted(image, fstype string, fn func(dir string) error) error {
	dir, err := os.MkdirTemp("", "vmkit-mnt-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	m, err := MountImage(image, dir, fstype)
	if err != nil {
		return err
	}
	fnErr := fn(dir)
	if cerr := m.Close(); cerr != nil {
		if fnErr == nil {
			return fmt.Errorf("release %s: %w", image, cerr)
		}
		fmt.Fprintf(os.Stderr, "vmkit: release %s: %v\n", image, cerr)
	}
	return fnErr
}

// Product is the pair of dockroot binaries a boot needs.
type Product struct {
	Init string // static dockroot-init, the initramfs's /init
	CLI  string // dockroot, whose initramfs verb builds the image
}

// BuildProduct builds cmd/dockroot-init (static, CGO_ENABLED=0) and
// cmd/dockroot from the repository into outDir with the go command.
func BuildProduct(outDir string) (*Product, error) {
	p := &Product{Init: filepath.Join(outDir, "dockroot-init"), CLI: filepath.Join(outDir, "dockroot")}
	for pkg, out := range map[string]string{"./cmd/dockroot-init": p.Init, "./cmd/dockroot": p.CLI} {
		if err := GoBuild(out, pkg); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// GoBuild builds the package pkg of the repository (e.g. ./cmd/dockroot-init)
// into out, static (CGO_ENABLED=0) and with -trimpath, with extra build
// flags such as "-ldflags", "-s -w".
func GoBuild(out, pkg string, flags ...string) error {
	return GoBuildArch("", out, pkg, flags...)
}

// GoBuildArch is GoBuild for the architecture goarch (GOARCH; "" is this
// machine's): bin/arm64/dockroot-init is GoBuildArch("arm64", ...).
func GoBuildArch(goarch, out, pkg string, flags ...string) error {
	repo, err := RepoRoot()
	if err != nil {
		return err
	}
	argv := append([]string{goTool(), "build", "-trimpath"}, flags...)
	argv = append(argv, "-o", out, pkg)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+goarch)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %s: %w\n%s", pkg, strings.Join(argv, " "), err, msg)
	}
	return nil
}

// goTool is the go command running this program's build when it is on
// PATH, else the one the Makefile uses.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// Initramfs runs `dockroot initramfs` for kernel k, writing out, with extra
// flags (e.g. "--config", file), and returns the builder's output.
func (p *Product) Initramfs(k *Kernel, out string, extra ...string) (string, error) {
	argv := append([]string{p.CLI, "initramfs",
		"-o", out,
		"--root", k.Root,
		"--kernel-version", k.Version,
		"--init", p.Init,
	}, extra...)
	cmd := exec.Command(argv[0], argv[1:]...)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return string(msg), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, msg)
	}
	return string(msg), nil
}
