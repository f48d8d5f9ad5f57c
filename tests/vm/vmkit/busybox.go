package vmkit

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BusyboxInitramfs writes a minimal initramfs to out whose /init is script,
// run by the host's static busybox, with the named kernel modules (and what
// they depend on) in /lib/modules and their insmod order in
// /modules.list. It does not involve dockroot at all: the VM tests use it
// to tell a broken harness (kernel, QEMU, disks, console) from a broken
// product.
func BusyboxInitramfs(k *Kernel, out, script string, modules ...string) error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox initramfs: %w (apt-get install busybox-static)", err)
	}
	stage, err := os.MkdirTemp("", "vmkit-initramfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, d := range []string{"bin", "dev", "proc", "sys", "mnt", "lib/modules"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(busybox, filepath.Join(stage, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "init"), []byte(script), 0o755); err != nil {
		return err
	}
	// The kernel opens /dev/console for init's stdio before init runs; the
	// Debian kernel does not mount devtmpfs itself (DEVTMPFS_MOUNT is off).
	if out, err := exec.Command("mknod", filepath.Join(stage, "dev", "console"), "c", "5", "1").CombinedOutput(); err != nil {
		return fmt.Errorf("mknod dev/console: %w: %s", err, out)
	}
	order, err := moduleOrder(k, modules)
	if err != nil {
		return err
	}
	var list []string
	for _, path := range order {
		name := filepath.Base(path)
		if err := copyFile(path, filepath.Join(stage, "lib", "modules", name), 0o644); err != nil {
			return err
		}
		list = append(list, name)
	}
	if err := os.WriteFile(filepath.Join(stage, "modules.list"), []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return writeCpio(stage, out)
}

// moduleOrder resolves modules to .ko paths with their dependencies first,
// using `modinfo -F depends` on the files, so it needs no modules.dep.
// Compressed modules are not handled: Debian 12's kernel ships plain .ko.
func moduleOrder(k *Kernel, modules []string) ([]string, error) {
	paths := map[string]string{}
	err := filepath.WalkDir(k.ModulesDir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			name := strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")
			paths[name] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var order []string
	done := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if done[name] {
			return nil
		}
		done[name] = true
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("module %s: no %s.ko under %s", name, name, k.ModulesDir())
		}
		out, err := exec.Command("modinfo", "-F", "depends", p).Output()
		if err != nil {
			return fmt.Errorf("modinfo -F depends %s: %w", p, err)
		}
		for _, dep := range strings.Split(strings.TrimSpace(string(out)), ",") {
			if dep != "" {
				if err := visit(dep); err != nil {
					return err
				}
			}
		}
		order = append(order, p)
		return nil
	}
	for _, m := range modules {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// writeCpio archives dir as an uncompressed newc cpio, the format the
// kernel unpacks into its initial rootfs.
func writeCpio(dir, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command("sh", "-c", "find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = f, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cpio of %s: %w: %s", dir, err, stderr.String())
	}
	return f.Close()
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}
