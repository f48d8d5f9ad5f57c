// Package packages tests `make package`: the .deb, the .rpm and the Arch
// package hold the tree `make install` stages, each with its own
// distribution's dependencies, and the .deb installs with dpkg into a
// Debian root where update-initramfs then builds dockroot into the initrd.
//
// Root tier: it runs make package (builds the binaries), the
// distributions' own readers (dpkg-deb, rpm, bsdtar) and dpkg inside a
// cached Debian root (vmkit.ItoolsRoot), in a throwaway overlay.
package packages

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/distpkg"
	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// built is make package's output: the staged tree and one file per format.
type built struct {
	root  string
	files []string // the staged tree's files, absolute, sorted
	pkg   map[string]string
}

func makePackage(t *testing.T) *built {
	t.Helper()
	repo, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	b := &built{root: filepath.Join(tmp, "root"), pkg: map[string]string{}}
	out := filepath.Join(tmp, "out")
	start := time.Now()
	cmd := exec.Command("make", "--no-print-directory", "package", "PKGROOT="+b.root, "PKGOUT="+out)
	cmd.Dir = repo
	if log, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, log)
	}
	t.Logf("make package in %v", time.Since(start).Round(time.Second))
	if b.files, err = distpkg.Files(b.root); err != nil {
		t.Fatal(err)
	}
	for format, glob := range map[string]string{"deb": "*.deb", "rpm": "*.rpm", "archlinux": "*.pkg.tar.zst"} {
		m, _ := filepath.Glob(filepath.Join(out, glob))
		if len(m) != 1 {
			t.Fatalf("make package wrote %v for %s; want one file", m, format)
		}
		b.pkg[format] = m[0]
	}
	return b
}

func output(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := testenv.Output(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// debFiles reads the .deb's data with dpkg-deb: its files and symlinks.
func debFiles(t *testing.T, deb string) []string {
	t.Helper()
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeDir {
			out = append(out, strings.TrimPrefix(h.Name, "."))
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile %s: %v", deb, err)
	}
	slices.Sort(out)
	return out
}

// rpmFiles lists the .rpm's files and symlinks with rpm itself.
func rpmFiles(t *testing.T, rpm string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(output(t, "rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", rpm), "\n") {
		perms, name, ok := strings.Cut(line, " ")
		if ok && !strings.HasPrefix(perms, "d") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// archFiles lists the Arch package with bsdtar, as pacman's libarchive
// reads it, leaving out its metadata (.PKGINFO, .MTREE, .INSTALL).
func archFiles(t *testing.T, pkg string) []string {
	t.Helper()
	var out []string
	for _, name := range strings.Split(output(t, "bsdtar", "-tf", pkg), "\n") {
		if name != "" && !strings.HasSuffix(name, "/") && !strings.HasPrefix(name, ".") {
			out = append(out, "/"+name)
		}
	}
	slices.Sort(out)
	return out
}

// TestPackageContents: the three packages hold exactly the staged tree,
// read by each distribution's own tool, with the same version, and each
// depends on what its distribution needs to use the hook, never on
// btrfs-progs.
func TestPackageContents(t *testing.T) {
	testenv.RequireRoot(t, "make", "dpkg-deb", "rpm", "bsdtar")
	b := makePackage(t)
	for _, want := range []string{"/usr/bin/dockroot", "/usr/lib/dockroot/dockroot-init",
		"/usr/share/initramfs-tools/hooks/dockroot", "/usr/share/initramfs-tools/scripts/local-premount/dockroot",
		"/usr/lib/systemd/system/dockroot-mark-good.service"} {
		if !slices.Contains(b.files, want) {
			t.Errorf("make install staged no %s", want)
		}
	}
	for format, got := range map[string][]string{
		"deb":       debFiles(t, b.pkg["deb"]),
		"rpm":       rpmFiles(t, b.pkg["rpm"]),
		"archlinux": archFiles(t, b.pkg["archlinux"]),
	} {
		if !slices.Equal(got, b.files) {
			t.Errorf("%s package files:\n%s\nwant the staged tree's:\n%s", format, strings.Join(got, "\n"), strings.Join(b.files, "\n"))
		}
	}

	debVersion := output(t, "dpkg-deb", "-f", b.pkg["deb"], "Version")
	rpmVersion := output(t, "rpm", "-qp", "--qf", "%{VERSION}-%{RELEASE}", b.pkg["rpm"])
	pkginfo := output(t, "bsdtar", "-xOf", b.pkg["archlinux"], ".PKGINFO")
	debVersion = strings.TrimSpace(debVersion)
	if debVersion != rpmVersion || !strings.Contains(pkginfo, "\npkgver = "+debVersion+"\n") {
		t.Errorf("versions differ: deb %q, rpm %q, Arch .PKGINFO:\n%s", debVersion, rpmVersion, pkginfo)
	}
	describe := output(t, "git", "describe", "--tags", "--always", "--dirty")
	commits, err := strconv.Atoi(strings.TrimSpace(output(t, "git", "rev-list", "--count", "HEAD")))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := distpkg.ParseDescribe(describe, commits); err != nil || debVersion != v.String()+"-1" {
		t.Errorf("version %s is not made from git describe %q (%v, %v)", debVersion, describe, v, err)
	}

	if d := strings.TrimSpace(output(t, "dpkg-deb", "-f", b.pkg["deb"], "Depends")); d != "initramfs-tools | dracut" {
		t.Errorf("deb Depends: %q; want initramfs-tools | dracut", d)
	}
	if trig := output(t, "sh", "-c", "dpkg-deb --ctrl-tarfile "+b.pkg["deb"]+" | tar -xOf - ./triggers"); !strings.Contains(trig, "activate-noawait update-initramfs") {
		t.Errorf("deb triggers: %q; want activate-noawait update-initramfs", trig)
	}
	var rpmReq []string
	for _, r := range strings.Split(output(t, "rpm", "-qp", "--requires", b.pkg["rpm"]), "\n") {
		if r = strings.TrimSpace(r); r != "" && !strings.HasPrefix(r, "rpmlib(") && !strings.HasPrefix(r, "/bin/sh") {
			rpmReq = append(rpmReq, r)
		}
	}
	if !slices.Equal(rpmReq, []string{"dracut"}) {
		t.Errorf("rpm Requires: %q; want dracut", rpmReq)
	}
	if strings.Contains(pkginfo, "\ndepend = ") {
		t.Errorf("Arch package has hard dependencies (mkinitcpio is optional):\n%s", pkginfo)
	}
	for format, file := range b.pkg {
		var meta string
		switch format {
		case "deb":
			meta = output(t, "dpkg-deb", "-f", file)
		case "rpm":
			meta = output(t, "rpm", "-qpR", file)
		default:
			meta = pkginfo
		}
		if strings.Contains(meta, "btrfs-progs") {
			t.Errorf("%s package depends on btrfs-progs:\n%s", format, meta)
		}
	}
}

// TestDebInstallsIntoDebian: dpkg -i of the .deb in a Debian root with
// initramfs-tools, and the initrd update-initramfs builds there holds
// dockroot-init and the local-premount script; the package's
// update-initramfs trigger rebuilds it, as on a real system.
func TestDebInstallsIntoDebian(t *testing.T) {
	testenv.RequireRoot(t, "make", "chroot", "dpkg-deb")
	b := makePackage(t)
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, err := vmkit.FetchKernel(cache)
	if err != nil {
		t.Skipf("root tier: Debian's kernel package is not available: %v", err)
	}
	start := time.Now()
	root, err := vmkit.ItoolsRoot(cache, "bookworm", k)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Debian root with initramfs-tools %s ready in %v", root, time.Since(start).Round(time.Second))
	deb, err := os.ReadFile(b.pkg["deb"])
	if err != nil {
		t.Fatal(err)
	}
	initrd := "boot/initrd.img-" + k.Version
	// A Debian system has an initrd for its kernel, and the trigger
	// rebuilds the ones there are (update-initramfs -u); the cached root
	// has none, so a stand-in marks the kernel's as present.
	const standIn = "not an initrd yet\n"
	files := []vmkit.File{{Path: "tmp/dockroot.deb", Data: string(deb)}, {Path: initrd, Data: standIn}}
	err = vmkit.InOverlay(root, files, func(m string) error {
		start := time.Now()
		if err := vmkit.Chroot(m, "sh", "-c", "dpkg -i /tmp/dockroot.deb >/tmp/dpkg.log 2>&1"); err != nil {
			log, _ := os.ReadFile(filepath.Join(m, "tmp/dpkg.log"))
			t.Fatalf("dpkg -i: %v\n%s", err, log)
		}
		log, _ := os.ReadFile(filepath.Join(m, "tmp/dpkg.log"))
		t.Logf("dpkg -i in %v:\n%s", time.Since(start).Round(time.Second), log)
		status, err := os.ReadFile(filepath.Join(m, "var/lib/dpkg/status"))
		if err != nil {
			return err
		}
		if !strings.Contains(string(status), "Package: dockroot\nStatus: install ok installed\n") {
			t.Errorf("dpkg does not list dockroot as installed")
		}
		for _, f := range b.files {
			if _, err := os.Lstat(filepath.Join(m, f)); err != nil {
				t.Errorf("after dpkg -i: %v", err)
			}
		}
		if _, err := os.Lstat(filepath.Join(m, "etc/systemd/system/multi-user.target.wants/dockroot-mark-good.service")); err != nil {
			t.Errorf("postinst did not enable dockroot-mark-good.service: %v", err)
		}
		// The trigger ran update-initramfs -u for the installed kernel.
		if b, err := os.ReadFile(filepath.Join(m, initrd)); err != nil || string(b) == standIn {
			return fmt.Errorf("the update-initramfs trigger did not rebuild /%s (%v):\n%s", initrd, err, log)
		}
		if err := vmkit.Chroot(m, "sh", "-c", "lsinitramfs /"+initrd+" >/tmp/lsinitramfs"); err != nil {
			return err
		}
		list, err := os.ReadFile(filepath.Join(m, "tmp/lsinitramfs"))
		if err != nil {
			return err
		}
		names := strings.Split(string(list), "\n")
		for _, want := range []string{"usr/lib/dockroot/dockroot-init", "scripts/local-premount/dockroot", "usr/lib/modules/" + k.Version + "/kernel/fs/btrfs/btrfs.ko"} {
			if !slices.Contains(names, want) {
				t.Errorf("lsinitramfs /%s lacks %s", initrd, want)
			}
		}
		// dockroot's own reader agrees, as `dockroot install --initramfs
		// image` will read this file.
		l, err := initramfs.ListFile(filepath.Join(m, initrd))
		if err != nil {
			return err
		}
		var regular int
		for _, mem := range l.Members {
			if mem.Regular() && slices.Contains(names, mem.Path) {
				regular++
			}
		}
		if regular == 0 || !slices.Contains(l.KernelVersions(), k.Version) {
			t.Errorf("initramfs.List read %d members (%d files lsinitramfs also lists), streams %v, kernels %v", len(l.Members), regular, l.Streams, l.KernelVersions())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
