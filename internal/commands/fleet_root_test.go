package commands

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
	"golang.org/x/sys/unix"
)

// fleet is the fleet admin's world in one machine: a registry on
// 127.0.0.1 (Debian's docker-registry), the admin's dockerd that builds
// and pushes, and a laptop's dockerd with its boot directory, menu and
// boot record.
type fleet struct {
	Registry string // 127.0.0.1:PORT
	Admin    *testenv.Dockerd
	Laptop   *testenv.Dockerd
	Base     string // the busybox base, on the admin's dockerd
	Kernel   *vmkit.Kernel
	BootDir  string // a small tmpfs, so that it can be filled
	Menu     string // the GRUB custom.cfg dockroot menu writes
	BootJSON string
	Top      string // the laptop's btrfs top level
	Env      []string
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	testenv.RequireRoot(t, "dockerd", "docker", "depmod", "docker-registry")
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, err := vmkit.FetchKernel(cache)
	if err != nil {
		t.Skipf("root tier: Debian's kernel package is not available: %v", err)
	}
	f := &fleet{Kernel: k, Registry: testenv.StartRegistry(t)}
	b := testenv.NewBtrfs(t, 2048, "linux")
	f.Top = b.Mnt
	f.Admin = testenv.StartDockerd(t, filepath.Join(b.Mnt, "admin/docker"))
	f.Laptop = testenv.StartDockerd(t, filepath.Join(b.Mnt, "var/lib/docker"))
	f.Base = f.Admin.BuildFixtures(t).Base

	f.BootDir = filepath.Join(t.TempDir(), "dockroot")
	if err := os.MkdirAll(f.BootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", f.BootDir)
	t.Cleanup(func() { testenv.Unmount(t, f.BootDir) })
	f.Menu = filepath.Join(t.TempDir(), "custom.cfg")
	f.BootJSON = filepath.Join(t.TempDir(), "boot.json")
	f.Env = []string{"DOCKROOT_INIT=" + standIn(t)}
	return f
}

// buildAndPush builds version of the fleet image on the admin's dockerd,
// pushes it as ref and returns its image ID.
func (f *fleet) buildAndPush(t *testing.T, ref, version string) string {
	t.Helper()
	id := buildKernelImage(t, f.Admin, f.Base, f.Kernel, ref, version)
	f.Admin.Docker(t, "push", ref)
	return id
}

// buildKernelImage builds ref on d: FROM base, the real kernel of Debian's
// package, its module directory as depmod leaves it with no modules (the
// initramfs needs none to be built), a marker naming version. It returns
// the image ID.
func buildKernelImage(t *testing.T, d *testenv.Dockerd, base string, k *vmkit.Kernel, ref, version string) string {
	t.Helper()
	ctx := t.TempDir()
	kver := k.Version
	if err := os.MkdirAll(filepath.Join(ctx, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "cp", k.Vmlinuz, filepath.Join(ctx, "boot", "vmlinuz-"+kver))
	if err := os.MkdirAll(filepath.Join(ctx, "lib/modules", kver), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "depmod", "-b", ctx, kver)
	dockerfile := strings.Join([]string{
		"FROM " + base,
		"COPY boot /boot",
		"COPY lib/modules /usr/lib/modules",
		"RUN ln -s usr/lib /lib",
		"RUN echo " + version + " > /etc/fixture-image",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Docker(t, "build", "--quiet", "--tag", ref, ctx)
	return d.Docker(t, "image", "inspect", "--format", "{{.Id}}", ref)
}

// cli runs dockroot in-process against the laptop's dockerd.
func (f *fleet) cli(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, stdout, stderr := runCLI(f.Env, args...)
	t.Logf("dockroot %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	return code, stdout + stderr
}

func (f *fleet) dockerHost() string { return "unix://" + f.Laptop.Socket }

// booted writes the boot record of a boot of ref as image id, with
// lastGood as boot counting's last good image.
func (f *fleet) booted(t *testing.T, ref, id, lastGood string) {
	t.Helper()
	writeBootRecord(t, f.BootJSON, ref, id, lastGood)
}

func writeBootRecord(t *testing.T, path, ref, id, lastGood string) {
	t.Helper()
	rec := &bootrecord.Record{Schema: bootrecord.Schema, Time: time.Now(), Ref: ref, ImageID: id,
		Cmdline:   "root=LABEL=linux rootflags=subvol=rw docker_image=" + ref,
		Layer:     bootrecord.Layer{Subvolume: "rw", Fresh: true, Image: id},
		BootCount: &bootrecord.BootCount{Tries: 3, Requested: bootrecord.ImageRef{Ref: ref, ID: id}, LastGood: &bootrecord.ImageRef{Ref: ref, ID: lastGood}}}
	if err := bootrecord.Write(path, rec); err != nil {
		t.Fatal(err)
	}
}

// snapshot is the boot directory (path -> SHA-256), the menu file and the
// laptop's tags, for "nothing changed" checks.
func (f *fleet) snapshot(t *testing.T, skip ...string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(f.BootDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.BootDir, p)
		for _, s := range skip {
			if rel == s {
				return nil
			}
		}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			lines = append(lines, rel+" "+hex.EncodeToString(sum[:]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	menu, _ := os.ReadFile(f.Menu)
	sum := sha256.Sum256(menu)
	lines = append(lines, "menu "+hex.EncodeToString(sum[:]))
	// The tags the entries boot; not dockroot's protective tags (update
	// keeps them in step with the boot record every run), nor an image a
	// failed run pulled and left untagged (the next prune takes it).
	for _, l := range strings.Split(f.Laptop.Docker(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"), "\n") {
		if !strings.Contains(l, "<none>") && !strings.HasPrefix(l, "dockroot/keep:") {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func (f *fleet) entry(t *testing.T, ref string) *bootmenu.Installed {
	t.Helper()
	in, err := bootmenu.ReadEntry(bootmenu.InstalledDir(f.BootDir, ref))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestUpdateRoot is the fleet loop of the README on one machine: the admin
// pushes v1, the laptop installs it with update and writes its menu;
// update then says "unchanged"; a failed pull, a full boot directory and
// an interrupted install leave entries and images as they were; v2 is
// staged; the running and last good image survive docker image prune -a
// and docker rmi until gc finds them unneeded.
func TestUpdateRoot(t *testing.T) {
	f := newFleet(t)
	ref := f.Registry + "/fleet/desk:stable"
	v1 := f.buildAndPush(t, ref, "v1")

	// The laptop's first install, through update, then its menu.
	code, out := f.cli(t, "update", ref, "--docker-host", f.dockerHost(), "--boot-dir", f.BootDir, "--boot-json", f.BootJSON)
	if code != 0 || !strings.Contains(out, "staged for the next boot") {
		t.Fatalf("first update: exit %d", code)
	}
	if got := f.entry(t, ref).ImageID; got != v1 {
		t.Fatalf("installed image %s, want v1 %s", got, v1)
	}
	code, _ = f.cli(t, "menu", "--bootloader", "grub", "--grub-style", "cfg", "--root", "LABEL=linux", "--rwlayer", "rw",
		"--boot-dir", f.BootDir, "--loader-path", "/dockroot", "-o", f.Menu)
	if code != 0 {
		t.Fatalf("menu: exit %d", code)
	}
	f.booted(t, ref, v1, v1)
	upd := []string{"update", "--docker-host", f.dockerHost(), "--boot-dir", f.BootDir, "--boot-json", f.BootJSON}

	t.Run("unchanged", func(t *testing.T) {
		before := f.snapshot(t)
		code, out := f.cli(t, upd...)
		if code != 0 || !strings.Contains(out, ref+": unchanged") {
			t.Fatalf("update: exit %d, want \"unchanged\"", code)
		}
		if after := f.snapshot(t); after != before {
			t.Errorf("an unchanged update changed the boot directory, menu or tags:\n%s\n---\n%s", before, after)
		}
		code, stdout, _ := runCLI(f.Env, append(upd, "--json")...)
		var res struct {
			Refs []struct{ Ref, Outcome, After string }
		}
		if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil ||
			len(res.Refs) != 1 || res.Refs[0].Outcome != "unchanged" || res.Refs[0].After != v1 {
			t.Errorf("update --json: exit %d, %v, %+v; want one unchanged ref at v1", code, err, res)
		}
		code, out = f.cli(t, append(upd, "--dry-run")...)
		if code != 0 || !strings.Contains(out, ref+": unchanged") {
			t.Errorf("update --dry-run: exit %d, want \"unchanged\" from the registry's digest", code)
		}
		for _, role := range []string{"running", "last-good"} {
			tag := "dockroot/keep:" + role + "-" + shortImageID(v1)
			if got := f.Laptop.Docker(t, "image", "inspect", "--format", "{{.Id}}", tag); got != v1 {
				t.Errorf("%s names %s, want v1 %s", tag, got, v1)
			}
		}
	})

	t.Run("pull error", func(t *testing.T) {
		before := f.snapshot(t)
		code, out := f.cli(t, append(upd, f.Registry+"/fleet/nope:1")...)
		if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "pull "+f.Registry+"/fleet/nope:1") {
			t.Fatalf("update of a missing image: exit %d, want 1 and the pull error", code)
		}
		if after := f.snapshot(t); after != before {
			t.Errorf("a failed pull changed something:\n%s\n---\n%s", before, after)
		}
	})

	v2 := f.buildAndPush(t, ref, "v2")
	if v2 == v1 {
		t.Fatal("v2 has v1's image ID")
	}

	t.Run("dry run", func(t *testing.T) {
		before := f.snapshot(t)
		code, out := f.cli(t, append(upd, "--dry-run")...)
		if code != 0 || !strings.Contains(out, ref+": the registry has sha256:") || !strings.Contains(out, "would pull and stage") {
			t.Fatalf("update --dry-run with v2 in the registry: exit %d, want \"would pull and stage\"", code)
		}
		if after := f.snapshot(t); after != before {
			t.Errorf("a dry run changed something:\n%s\n---\n%s", before, after)
		}
		if _, err := f.Laptop.Run(nil, "image", "inspect", v2); err == nil {
			t.Errorf("a dry run pulled v2")
		}
	})

	t.Run("full boot directory", func(t *testing.T) {
		var st unix.Statfs_t
		if err := unix.Statfs(f.BootDir, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize
		filler := filepath.Join(f.BootDir, "filler")
		if err := os.WriteFile(filler, make([]byte, free-1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		before := f.snapshot(t, "filler")
		code, out := f.cli(t, upd...)
		if code != 1 || !strings.Contains(out, "no space left on device") {
			t.Fatalf("update into a full boot directory: exit %d, want 1 and ENOSPC", code)
		}
		if after := f.snapshot(t, "filler"); after != before {
			t.Errorf("a full boot directory left changes:\n%s\n---\n%s", before, after)
		}
		if got := f.Laptop.Docker(t, "image", "inspect", "--format", "{{.Id}}", ref); got != v1 {
			t.Errorf("after the failed install %s names %s, want v1 %s (tagged back)", ref, got, v1)
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("interrupted install", func(t *testing.T) {
		// What a power cut in install's "stage files" leaves: a staging
		// directory with half a kernel; and a directory that is not
		// dockroot's (no entry.json).
		half := filepath.Join(f.BootDir, ".dockroot-staging", "install-cut", bootmenu.Slug(ref))
		foreign := filepath.Join(f.BootDir, "mine")
		for _, d := range []string{half, foreign} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(half, bootmenu.KernelFile), []byte("half a kernel"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(foreign, bootmenu.KernelFile), []byte("the user's"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := f.cli(t, upd...)
		if code != 0 || !strings.Contains(out, "staged for the next boot: image "+shortImageID(v2)) {
			t.Fatalf("update after an interrupted install: exit %d, want v2 staged", code)
		}
		if got := f.entry(t, ref).ImageID; got != v2 {
			t.Errorf("entry boots %s, want v2 %s", got, v2)
		}
		if data, err := os.ReadFile(filepath.Join(foreign, bootmenu.KernelFile)); err != nil || string(data) != "the user's" {
			t.Errorf("the user's directory changed: %q %v", data, err)
		}
		menu, err := os.ReadFile(f.Menu)
		if err != nil {
			t.Fatal(err)
		}
		if bootmenu.ClassifyMenu(menu) != bootmenu.MenuGenerated || !strings.Contains(string(menu), "docker_image="+ref) || strings.Contains(string(menu), "mine") {
			t.Errorf("menu after the update:\n%s", menu)
		}
		if _, err := os.Stat(filepath.Dir(half)); err == nil {
			t.Errorf("%s, left by the interrupted install, is still there", filepath.Dir(half))
		}
	})

	t.Run("status shows staged", func(t *testing.T) {
		code, out := f.cli(t, "status", "--boot-json", f.BootJSON, "--boot-dir", f.BootDir)
		if code != 0 || !strings.Contains(out, "staged") || !strings.Contains(out, shortImageID(v2)) || !strings.Contains(out, "last good") {
			t.Errorf("status: exit %d, want running v1, staged v2 and last good", code)
		}
	})

	t.Run("protected from prune and rmi", func(t *testing.T) {
		t.Logf("docker image prune -a -f:\n%s", f.Laptop.Docker(t, "image", "prune", "-a", "-f"))
		t.Logf("images after it:\n%s", f.Laptop.Docker(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
		if _, err := f.Laptop.Run(nil, "image", "inspect", v1); err != nil {
			t.Fatalf("docker image prune -a deleted v1, the running and last good image: %v", err)
		}
		if out, err := f.Laptop.Run(nil, "rmi", v1); err == nil {
			t.Errorf("docker rmi %s deleted the running image: %s", v1, out)
		}
		if _, err := f.Laptop.Run(nil, "image", "inspect", v2); err != nil {
			t.Errorf("v2, staged, is gone: %v", err)
		}
		// prune -a strips all but one tag of each image a container
		// keeps; the next update's pull puts the entry's tag back.
		code, out := f.cli(t, upd...)
		if code != 0 || !strings.Contains(out, ref+": unchanged") {
			t.Errorf("update after prune -a: exit %d, want unchanged", code)
		}
		if got := f.Laptop.Docker(t, "image", "inspect", "--format", "{{.Id}}", ref); got != v2 {
			t.Errorf("after update %s names %s, want v2 %s", ref, got, v2)
		}
	})

	t.Run("gc after v2 is good", func(t *testing.T) {
		f.booted(t, ref, v2, v2)
		t.Logf("laptop images before gc:\n%s", f.Laptop.Docker(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
		cut := filepath.Join(f.BootDir, ".dockroot-staging", "remove-cut")
		if err := os.MkdirAll(cut, 0o755); err != nil {
			t.Fatal(err)
		}
		code, out := f.cli(t, "gc", "--boot-dir", f.BootDir, "--docker-host", f.dockerHost(), "--boot-json", f.BootJSON,
			"--top", f.Top, "--rwlayer", "rw")
		if code != 0 || !strings.Contains(out, "removed dockroot-keep-") || !strings.Contains(out, "removed "+cut) {
			t.Fatalf("gc: exit %d, want the stale protection and the staging leftovers removed", code)
		}
		f.Laptop.Docker(t, "image", "prune", "-a", "-f")
		if _, err := f.Laptop.Run(nil, "image", "inspect", v1); err == nil {
			t.Errorf("v1 is still there after gc and prune -a: nothing needs it")
		}
		if _, err := f.Laptop.Run(nil, "image", "inspect", v2); err != nil {
			t.Errorf("v2, running and last good, is gone: %v", err)
		}
		if _, err := os.Stat(filepath.Join(f.BootDir, "mine", bootmenu.KernelFile)); err != nil {
			t.Errorf("gc touched a directory that is not dockroot's: %v", err)
		}
		if got := f.entry(t, ref).ImageID; got != v2 {
			t.Errorf("entry boots %s after gc, want v2", got)
		}
	})
}
