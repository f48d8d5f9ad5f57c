package commands

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootmenu"
)

// drive runs one command line in-process.
func drive(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(&Context{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Args: args}, testVersion)
	return code, out.String(), errb.String()
}

// bootDirWith installs fake kernels for refs the way `dockroot install`
// records them.
func bootDirWith(t *testing.T, refs ...string) string {
	t.Helper()
	boot := t.TempDir()
	for _, ref := range refs {
		dir := bootmenu.InstalledDir(boot, ref)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{bootmenu.KernelFile, bootmenu.InitrdFile} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(ref), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := bootmenu.WriteInstalled(boot, bootmenu.Installed{Ref: ref, ImageID: "sha256:" + strings.Repeat("0", 64), KernelVersion: "6.1.0-1-amd64"}); err != nil {
			t.Fatal(err)
		}
	}
	return boot
}

func menuArgs(boot, loader string, more ...string) []string {
	return append([]string{"menu", "--bootloader", loader, "--root", "LABEL=linux", "--rwlayer", "@/rw",
		"--boot-dir", boot, "--loader-path", "/dockroot"}, more...)
}

func TestMenuGRUB(t *testing.T) {
	boot := bootDirWith(t, "desk:stable", "desk:testing")
	out := filepath.Join(t.TempDir(), "42_dockroot")
	code, stdout, stderr := drive(menuArgs(boot, "grub", "--default", "desk:testing", "--toplayer-path", "machines/a b", "-o", out)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "wrote "+out+": 3 entries (desk:stable, desk:testing, previous layer), default desk:testing") {
		t.Errorf("stdout %q", stdout)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("grub.d script %v mode %v: grub-mkconfig runs only executable scripts", err, fi.Mode())
	}
	data, _ := os.ReadFile(out)
	s := string(data)
	for _, want := range []string{"#!/bin/sh\nexec tail -n +3 $0\n", "GRUB_DEFAULT=dockroot-desk-testing",
		"linux '/dockroot/desk-stable/vmlinuz' 'root=LABEL=linux' 'rootflags=subvol=@/rw' 'docker_path=var/lib/docker' 'toplayer_path=machines/a b' 'docker_image=desk:stable' 'rw'",
		"initrd '/dockroot/desk-testing/initramfs.img'", "'dockroot.layer=previous'"} {
		if !strings.Contains(s, want) {
			t.Errorf("GRUB output lacks %q:\n%s", want, s)
		}
	}

	code, stdout, _ = drive(menuArgs(boot, "grub", "--grub-style", "cfg")...)
	if code != 0 || !strings.HasPrefix(stdout, "# dockroot") || !strings.Contains(stdout, "set default='dockroot-desk-stable'") {
		t.Errorf("cfg to stdout: exit %d\n%s", code, stdout)
	}
}

func TestMenuRefind(t *testing.T) {
	boot := bootDirWith(t, "desk:stable")
	code, stdout, stderr := drive(menuArgs(boot, "refind", "--append", "console=ttyS0", "--toplayer", "LABEL=top", "--toplayer-path", "a b")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := `options "root=LABEL=linux rootflags=subvol=@/rw docker_path=var/lib/docker toplayer=LABEL=top toplayer_path=""a b"" docker_image=desk:stable rw console=ttyS0"`
	if !strings.Contains(stdout, want) || !strings.Contains(stdout, `menuentry "dockroot desk:stable" {`) {
		t.Errorf("rEFInd output lacks %s:\n%s", want, stdout)
	}
}

func TestMenuSystemdBoot(t *testing.T) {
	boot := bootDirWith(t, "desk:stable", "desk:testing")
	esp := t.TempDir()
	entries := filepath.Join(esp, "loader", "entries")
	if err := os.MkdirAll(entries, 0o755); err != nil {
		t.Fatal(err)
	}
	// A tag no longer installed, and the user's own entry.
	for _, f := range []string{"dockroot-desk-old.conf", "debian.conf"} {
		if err := os.WriteFile(filepath.Join(entries, f), []byte("title x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := drive(menuArgs(boot, "systemd-boot", "-o", esp)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, _ := filepath.Glob(filepath.Join(entries, "*.conf"))
	var names []string
	for _, g := range got {
		names = append(names, filepath.Base(g))
	}
	want := "debian.conf dockroot-desk-stable.conf dockroot-desk-testing.conf dockroot-previous-layer.conf"
	if strings.Join(names, " ") != want {
		t.Errorf("entries dir holds %v, want %s", names, want)
	}
	if !strings.Contains(stdout, "removed "+filepath.Join(entries, "dockroot-desk-old.conf")) || !strings.Contains(stdout, "bootctl set-default dockroot-desk-stable.conf") {
		t.Errorf("stdout: %s", stdout)
	}
	data, err := os.ReadFile(filepath.Join(entries, "dockroot-desk-testing.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var opts string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "options "); ok {
			opts = v
		}
	}
	cl, err := config.ParseCmdline(opts)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := cl.Get("docker_image"); v != "desk:testing" {
		t.Errorf("docker_image=%q in %s", v, data)
	}
	if !strings.Contains(string(data), "linux /dockroot/desk-testing/vmlinuz\n") {
		t.Errorf("BLS entry:\n%s", data)
	}

	// -o must be a directory for BLS.
	code, _, stderr = drive(menuArgs(boot, "systemd-boot", "-o", filepath.Join(esp, "nope"))...)
	if code != 1 || !strings.Contains(stderr, "ESP") {
		t.Errorf("-o missing dir: exit %d %s", code, stderr)
	}
}

func TestMenuErrors(t *testing.T) {
	boot := bootDirWith(t, "desk:stable")
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no bootloader", []string{"menu", "--root", "x", "--rwlayer", "y"}, 2, "--bootloader is required"},
		{"bad bootloader", menuArgs(boot, "lilo"), 2, `--bootloader "lilo"`},
		{"no root", []string{"menu", "--bootloader", "grub", "--rwlayer", "y"}, 2, "--root SPEC is required"},
		{"no layer", []string{"menu", "--bootloader", "grub", "--root", "x"}, 2, "--rwlayer NAME is required"},
		{"bad style", menuArgs(boot, "grub", "--grub-style", "json"), 2, "--grub-style"},
		{"extra argument", menuArgs(boot, "grub", "desk:stable"), 2, "unexpected argument"},
		{"unknown flag", menuArgs(boot, "grub", "--bogus"), 2, "bogus"},
		{"nothing installed", menuArgs(empty, "grub"), 1, "dockroot install desk:stable --boot-dir " + empty},
		{"boot dir missing", menuArgs(filepath.Join(empty, "x"), "grub"), 1, "no kernels installed in"},
		{"unknown default", menuArgs(boot, "grub", "--default", "desk:nope"), 1, "installed: desk:stable"},
		{"quote for GRUB", menuArgs(boot, "grub", "--append", "a='b'"), 1, "GRUB passes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := drive(tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, tc.code, tc.want)
			}
			if usage := strings.Contains(stderr, "Usage:"); usage != (tc.code == 2) {
				t.Errorf("usage printed: %v for exit %d", usage, tc.code)
			}
		})
	}
}

func TestMenuLoaderPathFromMounts(t *testing.T) {
	boot := bootDirWith(t, "desk:stable")
	real, err := filepath.EvalSymlinks(boot)
	if err != nil {
		t.Fatal(err)
	}
	mi := filepath.Join(t.TempDir(), "mountinfo")
	content := "22 1 0:21 / / rw - ext4 /dev/sda2 rw\n30 22 0:40 /@ " + filepath.Dir(real) + " rw - btrfs /dev/sdb rw\n"
	if err := os.WriteFile(mi, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old := mountinfoPath
	mountinfoPath = mi
	t.Cleanup(func() { mountinfoPath = old })

	code, stdout, stderr := drive("menu", "--bootloader", "grub", "--root", "LABEL=x", "--rwlayer", "rw", "--boot-dir", boot)
	want := "'/@/" + filepath.Base(real) + "/desk-stable/vmlinuz'"
	if code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("exit %d %s; want %s in\n%s", code, stderr, want, stdout)
	}
}

func TestVerbHelp(t *testing.T) {
	for _, verb := range []string{"menu", "images", "status", "gc"} {
		code, out, _ := drive(verb, "--help")
		if code != 0 || !strings.Contains(out, "Examples:\n  # ") || !strings.Contains(out, "dockroot "+verb+" ") || !strings.Contains(out, "Exit codes:") {
			t.Errorf("%s --help: exit %d\n%s", verb, code, out)
		}
	}
}

// -o never replaces a file dockroot menu did not write (a custom.cfg may
// hold the user's own entries); its own output, or an empty file, it does.
func TestMenuKeepsForeignFile(t *testing.T) {
	boot := bootDirWith(t, "desk:stable")
	dir := t.TempDir()
	custom := filepath.Join(dir, "custom.cfg")
	const mine = "menuentry 'Windows' {\n\tchainloader /EFI/Microsoft/Boot/bootmgfw.efi\n}\n"
	if err := os.WriteFile(custom, []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := drive(menuArgs(boot, "grub", "--grub-style", "cfg", "-o", custom)...)
	if got, _ := os.ReadFile(custom); code != 1 || string(got) != mine || stdout != "" ||
		!strings.Contains(stderr, "-o "+custom+": the file exists and dockroot menu did not write it") || !strings.Contains(stderr, "move the file away") {
		t.Fatalf("menu -o over the user's file: exit %d, file now %q, stdout %q, stderr %q; want exit 1, the file untouched and a way out", code, got, stdout, stderr)
	}
	for _, name := range []string{"empty", "its own"} {
		p := filepath.Join(dir, name+".cfg")
		if name == "empty" {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		} else if code, _, stderr := drive(menuArgs(boot, "grub", "--grub-style", "cfg", "-o", p)...); code != 0 {
			t.Fatalf("first write: exit %d: %s", code, stderr)
		}
		if code, _, stderr := drive(menuArgs(boot, "grub", "--grub-style", "cfg", "--append", "quiet", "-o", p)...); code != 0 {
			t.Errorf("%s file: exit %d: %s", name, code, stderr)
		} else if got, _ := os.ReadFile(p); !strings.Contains(string(got), "quiet") {
			t.Errorf("%s file was not rewritten:\n%s", name, got)
		}
	}
}
