package vmkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kernel is an unpacked Debian kernel package: a filesystem root holding
// boot/vmlinuz-KVER and lib/modules/KVER, the layout
// `dockroot initramfs --root` reads.
type Kernel struct {
	Root    string // the unpacked package; pass as --root
	Vmlinuz string
	Version string // KVER, e.g. 6.1.0-56-amd64
}

// ModulesDir is lib/modules/KVER under the kernel root.
func (k *Kernel) ModulesDir() string {
	return filepath.Join(k.Root, "lib", "modules", k.Version)
}

// FetchKernel runs tests/vm/fetch-kernel.sh to download and unpack Debian's
// current kernel package into cacheDir/kernel (a no-op once it is there) and
// returns it.
func FetchKernel(cacheDir string) (*Kernel, error) {
	return FetchKernelArch(cacheDir, "")
}

// FetchKernelArch is FetchKernel for Debian's kernel of another
// architecture ("arm64"; "" is this machine's), read from a private apt
// index in cacheDir (see fetch-deb.sh): the host's apt configuration is not
// changed.
func FetchKernelArch(cacheDir, arch string) (*Kernel, error) {
	var env []string
	if arch != "" {
		env = append(env, "KERNEL_ARCH="+arch)
	}
	root, err := fetchScript("fetch-kernel.sh", env, filepath.Join(cacheDir, "kernel"))
	if err != nil {
		return nil, fmt.Errorf("fetch the kernel: %w", err)
	}
	return KernelAt(root)
}

// FetchDeb downloads and unpacks Debian's package pkg for arch ("" is this
// machine's) into cacheDir/debs-ARCH/PACKAGE_VERSION (once) and returns
// that directory.
func FetchDeb(cacheDir, arch, pkg string) (string, error) {
	var env []string
	dir := "debs"
	if arch != "" {
		env = append(env, "DEB_ARCH="+arch)
		dir += "-" + arch
	}
	root, err := fetchScript("fetch-deb.sh", env, filepath.Join(cacheDir, dir), pkg)
	if err != nil {
		return "", fmt.Errorf("fetch Debian's %s: %w", pkg, err)
	}
	return root, nil
}

// fetchScript runs one of tests/vm's fetch scripts and returns the last
// line of its output: the directory it unpacked into.
func fetchScript(name string, env []string, args ...string) (string, error) {
	repo, err := RepoRoot()
	if err != nil {
		return "", err
	}
	argv := append([]string{"sh", filepath.Join(repo, "tests", "vm", name)}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", strings.Join(env, " "), strings.Join(argv, " "), err, stderr.String())
	}
	root := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(root, '\n'); i >= 0 {
		root = root[i+1:]
	}
	return root, nil
}

// KernelAt describes the kernel unpacked at root, which must hold exactly
// one boot/vmlinuz-KVER.
func KernelAt(root string) (*Kernel, error) {
	found, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil || len(found) != 1 {
		return nil, fmt.Errorf("kernel root %s: want exactly one boot/vmlinuz-*, found %d; delete it and run again to refetch", root, len(found))
	}
	k := &Kernel{Root: root, Vmlinuz: found[0], Version: strings.TrimPrefix(filepath.Base(found[0]), "vmlinuz-")}
	if _, err := os.Stat(k.ModulesDir()); err != nil {
		return nil, fmt.Errorf("kernel root %s: %w; delete it and run again to refetch", root, err)
	}
	return k, nil
}
