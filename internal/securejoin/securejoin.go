// Package securejoin resolves paths inside a root that is not the running
// system's own (an image's tree, the new root), as the kernel would after
// chroot: symlinks are followed inside the root and never out of it. The
// boot (init checks), the top layer and the host tool (imagekernel, doctor)
// share it.
//
// It is a leaf: it imports nothing of dockroot's.
package securejoin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxSymlinks is the kernel's own limit on symlinks followed in one lookup
// (MAXSYMLINKS in include/linux/namei.h is 40).
const MaxSymlinks = 40

// Join returns root joined with rel, with every symlink in the parent
// directories of rel resolved as if root were "/" (a chroot): absolute
// targets restart at root and ".." never climbs above it. The last element
// is not followed, so the caller can replace or lstat it, as a write into
// someone else's root must (Ignition's JoinPath makes the same choice).
//
// The result is a path string: it is safe against the image's content, not
// against a process changing the tree concurrently. Apply does not use it;
// it walks with directory file descriptors instead.
func Join(root, rel string) (string, error) {
	return resolveInRoot(root, rel, false)
}

// Resolve is Join that also follows the last element, the way
// the kernel would after chroot(root): use it to find what a path such as
// /sbin/init (often -> ../lib/systemd/systemd) really names in the image.
func Resolve(root, rel string) (string, error) {
	return resolveInRoot(root, rel, true)
}

func resolveInRoot(root, rel string, followLast bool) (string, error) {
	if root == "" {
		return "", fmt.Errorf("resolve %q in root: empty root", rel)
	}
	root = filepath.Clean(root)
	var resolved []string // components under root, no symlinks among them
	pending := splitPath(rel)
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case ".":
			continue
		case "..":
			if len(resolved) > 0 {
				resolved = resolved[:len(resolved)-1]
			}
			continue
		}
		next := append(resolved[:len(resolved):len(resolved)], c)
		if len(pending) == 0 && !followLast {
			resolved = next
			break
		}
		full := filepath.Join(root, filepath.Join(next...))
		fi, err := os.Lstat(full)
		if err != nil {
			// A missing component (or a file used as a directory) cannot
			// redirect anything: the rest of the path is taken literally.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
				resolved = next
				continue
			}
			return "", fmt.Errorf("resolve %q in root %s: %w", rel, root, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > MaxSymlinks {
			return "", fmt.Errorf("resolve %q in root %s: more than %d symlinks (a loop?): %w", rel, root, MaxSymlinks, unix.ELOOP)
		}
		target, err := os.Readlink(full)
		if err != nil {
			return "", fmt.Errorf("resolve %q in root %s: %w", rel, root, err)
		}
		if strings.HasPrefix(target, "/") {
			resolved = nil
		}
		pending = append(splitPath(target), pending...)
	}
	return filepath.Join(root, filepath.Join(resolved...)), nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}
