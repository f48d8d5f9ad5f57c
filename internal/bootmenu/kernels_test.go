package bootmenu

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestFindKernels(t *testing.T) {
	root := t.TempDir()
	put := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, rel string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	put("boot/vmlinuz-6.1.0-9-amd64", "k")
	put("boot/vmlinuz-6.1.0-28-amd64", "k")
	put("boot/vmlinuz-empty", "")                  // not a kernel: empty
	link("vmlinuz-6.1.0-28-amd64", "boot/vmlinuz") // Debian's convenience link: no version
	put("usr/lib/modules/6.1.0-28-amd64/modules.dep", "")
	put("usr/lib/modules/6.1.0-9-amd64/kernel/fs/btrfs.ko", "") // no modules.dep: not usable
	put("usr/lib/modules/6.12.1-arch1/vmlinuz", "k")
	put("usr/lib/modules/6.12.1-arch1/modules.dep", "")
	// Merged /usr with an absolute link, as some images have: it must be
	// followed inside the image, not on the host.
	link("/usr/lib", "lib")

	got, err := FindKernels(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Kernel{
		{Version: "6.1.0-9-amd64", Path: "/boot/vmlinuz-6.1.0-9-amd64", Modules: false},
		{Version: "6.1.0-28-amd64", Path: "/boot/vmlinuz-6.1.0-28-amd64", Modules: true},
		{Version: "6.12.1-arch1", Path: "/usr/lib/modules/6.12.1-arch1/vmlinuz", Modules: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FindKernels =\n%+v\nwant\n%+v", got, want)
	}

	// /boot pointing out of the image finds nothing on the host.
	escape := t.TempDir()
	outside := filepath.Join(t.TempDir(), "hostboot")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "vmlinuz-9.9.9-host"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(escape, "boot")); err != nil {
		t.Fatal(err)
	}
	got, err = FindKernels(escape)
	if err != nil || len(got) != 0 {
		t.Errorf("image whose /boot links to the host's %s: %+v, %v; want nothing", outside, got, err)
	}

	// No kernel at all, and /boot a file.
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "boot"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := FindKernels(empty); err != nil || len(got) != 0 {
		t.Errorf("empty image: %+v, %v", got, err)
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"6.1.0-9-amd64", "6.1.0-28-amd64", true},
		{"6.1.0-28-amd64", "6.1.0-9-amd64", false},
		{"6.9", "6.12", true},
		{"6.12", "6.12.1", true},
		{"6.01", "6.1", false},
		{"5.10.0-30-amd64", "6.1.0-1-amd64", true},
		{"6.1.0-1-amd64", "6.1.0-1-arm64", true},
		{"6.1", "6.1", false},
	} {
		if got := VersionLess(tc.a, tc.b); got != tc.less {
			t.Errorf("VersionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.less)
		}
	}
}
