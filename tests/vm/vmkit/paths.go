package vmkit

import (
	"fmt"
	"os"
	"path/filepath"
)

// RepoRoot returns the directory holding dockroot's go.mod, found by walking
// up from the working directory (go test runs in the package directory,
// go run in the caller's).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the dockroot repository: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "cmd", "dockroot-init")); err == nil {
				return d, nil
			}
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("find the dockroot repository: no go.mod with cmd/dockroot-init above %s; run from inside the repository", dir)
		}
	}
}

// CacheDir is where downloads that outlive a run are kept (the kernel
// package, the debootstrap tarball): $DOCKROOT_CACHE, which the Makefile
// sets, or .cache in the repository.
func CacheDir() (string, error) {
	if d := os.Getenv("DOCKROOT_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache"), nil
}
