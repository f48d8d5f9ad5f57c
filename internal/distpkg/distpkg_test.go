package distpkg

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goreleaser/nfpm/v2/files"
	"github.com/klauspost/compress/zstd"
)

func TestParseDescribe(t *testing.T) {
	for _, c := range []struct {
		describe string
		commits  int
		want     string
		err      bool
	}{
		{"v1.2.0", 90, "1.2.0", false},
		{"1.2.0", 90, "1.2.0", false},
		{"v1.2.0-dirty", 90, "1.2.0+dirty", false},
		{"v1.2.0-3-gabc1234", 93, "1.2.0+git3.gabc1234", false},
		{"v1.2.0-3-gabc1234-dirty", 93, "1.2.0+git3.gabc1234.dirty", false},
		{"d47aa02", 184, "0.0.0+git184.gd47aa02", false},
		{"d47aa02-dirty", 184, "0.0.0+git184.gd47aa02.dirty", false},
		{" d47aa02\n", 1, "0.0.0+git1.gd47aa02", false},
		{"dev", 0, "", true},
		{"v1.2", 0, "", true},
		{"v1.2.0-rc1", 0, "", true},
		{"", 0, "", true},
	} {
		v, err := ParseDescribe(c.describe, c.commits)
		if (err != nil) != c.err || err == nil && v.String() != c.want {
			t.Errorf("ParseDescribe(%q, %d) = %q, %v; want %q (error %v)", c.describe, c.commits, v, err, c.want, c.err)
		}
	}
}

// stage makes a staged tree like make install's, with a dracut module
// directory (named for dockroot) and a symlink.
func stage(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for p, mode := range map[string]os.FileMode{
		"usr/bin/dockroot":                                          0o755,
		"usr/lib/dockroot/dockroot-init":                            0o755,
		"usr/share/initramfs-tools/hooks/dockroot":                  0o755,
		"usr/lib/dracut/modules.d/90dockroot/module-setup.sh":       0o755,
		"usr/lib/systemd/system/dockroot-mark-good.service":         0o644,
		"usr/share/initramfs-tools/scripts/local-premount/dockroot": 0o755,
	} {
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("#!/bin/sh\n# "+p+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("dockroot-mark-good.service", filepath.Join(root, "usr/lib/systemd/system/dockroot-alias.service")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestContents(t *testing.T) {
	root := stage(t)
	cs, err := Contents(root)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*files.Content{}
	for _, c := range cs {
		got[c.Destination] = c
	}
	for dst, want := range map[string]struct {
		typ  string
		mode os.FileMode
	}{
		"/usr/bin/dockroot": {"", 0o755},
		"/usr/lib/systemd/system/dockroot-mark-good.service": {"", 0o644},
		"/usr/lib/dockroot":                                    {files.TypeDir, 0o755},
		"/usr/lib/dracut/modules.d/90dockroot":                 {files.TypeDir, 0o755},
		"/usr/lib/dracut/modules.d/90dockroot/module-setup.sh": {"", 0o755},
		"/usr/lib/systemd/system/dockroot-alias.service":       {files.TypeSymlink, 0},
	} {
		c := got[dst]
		if c == nil {
			t.Errorf("Contents lacks %s", dst)
			continue
		}
		if c.Type != want.typ || c.FileInfo.Mode != want.mode || c.FileInfo.Owner != "root" {
			t.Errorf("%s: type %q mode %v owner %q; want type %q mode %v owner root", dst, c.Type, c.FileInfo.Mode, c.FileInfo.Owner, want.typ, want.mode)
		}
	}
	// The distributions' directories are not the package's.
	for _, dst := range []string{"/usr", "/usr/lib", "/usr/lib/systemd/system", "/usr/share/initramfs-tools/hooks"} {
		if got[dst] != nil {
			t.Errorf("Contents owns %s, a directory of the distribution", dst)
		}
	}
	if c := got["/usr/lib/systemd/system/dockroot-alias.service"]; c != nil && c.Source != "dockroot-mark-good.service" {
		t.Errorf("symlink target %q", c.Source)
	}

	// A tree without the binaries is not packaged.
	if err := os.Remove(filepath.Join(root, "usr/lib/dockroot/dockroot-init")); err != nil {
		t.Fatal(err)
	}
	var missing *MissingFileError
	if _, err := Contents(root); !errors.As(err, &missing) || missing.Path != "usr/lib/dockroot/dockroot-init" {
		t.Errorf("Contents without dockroot-init: %v; want a MissingFileError naming it", err)
	}
}

// TestBuild writes the three packages from a staged tree and reads the Arch
// one back (a zstd tar: the standard readers): the same files, the version
// in pkgver, no dependency. rpm and deb are read with their own tools by
// tests/package.
func TestBuild(t *testing.T) {
	root, out := stage(t), t.TempDir()
	v := Version{Base: "0.0.0", Meta: "git7.gabc1234"}
	pkgs, err := Build(Options{Root: root, OutDir: out, Version: v, Arch: "amd64", Scripts: "../../dist/package", MTime: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pkgs {
		names = append(names, filepath.Base(p.File))
	}
	want := []string{
		"dockroot_0.0.0+git7.gabc1234-1_amd64.deb",
		"dockroot-0.0.0+git7.gabc1234-1.x86_64.rpm",
		"dockroot-0.0.0+git7.gabc1234-1-x86_64.pkg.tar.zst",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("packages %v; want %v", names, want)
	}
	wantFiles, err := Files(root)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pkgs[2].File)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var gotFiles []string
	var pkginfo, install []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.Name == ".PKGINFO":
			pkginfo, _ = io.ReadAll(tr)
		case h.Name == ".INSTALL":
			install, _ = io.ReadAll(tr)
		case strings.HasPrefix(h.Name, "."):
		case h.Typeflag != tar.TypeDir:
			gotFiles = append(gotFiles, "/"+h.Name)
		}
	}
	slices.Sort(gotFiles)
	if !slices.Equal(gotFiles, wantFiles) {
		t.Errorf("Arch package files:\n%s\nwant the staged tree's:\n%s", strings.Join(gotFiles, "\n"), strings.Join(wantFiles, "\n"))
	}
	for _, line := range []string{"pkgname = dockroot\n", "pkgver = 0.0.0+git7.gabc1234-1\n", "arch = x86_64\n"} {
		if !bytes.Contains(pkginfo, []byte(line)) {
			t.Errorf(".PKGINFO lacks %q:\n%s", line, pkginfo)
		}
	}
	if bytes.Contains(pkginfo, []byte("depend =")) {
		t.Errorf(".PKGINFO has a hard dependency; mkinitcpio is optional:\n%s", pkginfo)
	}
	if !bytes.Contains(install, []byte("function post_install()")) || !bytes.Contains(install, []byte("HOOKS=")) {
		t.Errorf(".INSTALL does not tell how to enable the hook:\n%s", install)
	}
}
