package commands

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootmenu"
	"golang.org/x/sys/unix"
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

// driveWithin runs one command line in-process and fails the test if it
// has not returned within d (a read of a fifo blocks until a writer comes):
// unblock, when given, is called then so the stuck run can end.
func driveWithin(t *testing.T, d time.Duration, unblock func(), args ...string) (code int, stdout, stderr string) {
	t.Helper()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		c, o, e := drive(args...)
		done <- result{c, o, e}
	}()
	select {
	case r := <-done:
		return r.code, r.stdout, r.stderr
	case <-time.After(d):
		if unblock != nil {
			unblock()
		}
		t.Fatalf("dockroot %s: still running after %v", strings.Join(args, " "), d)
		return 0, "", ""
	}
}

// -o refuses anything but a regular file, promptly, and leaves it as it
// was: a device node replaced by a regular file breaks the machine, and a
// fifo would block the read forever.
func TestMenuOutputNotRegular(t *testing.T) {
	boot := bootDirWith(t, "desk:stable")
	dir := t.TempDir()
	if os.Getuid() == 0 {
		// A regression here, run as root, would replace the machine's
		// /dev/null with a regular file: put it back.
		t.Cleanup(func() {
			if fi, err := os.Lstat("/dev/null"); err == nil && fi.Mode()&os.ModeCharDevice == 0 {
				t.Errorf("/dev/null was replaced (%v); restoring it", fi.Mode())
				os.Remove("/dev/null")
				unix.Mknod("/dev/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
			}
		})
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sub := filepath.Join(dir, "subdir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(dir, "real.cfg")
	if err := os.WriteFile(real, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.cfg")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       []string
		root       bool // needs uid 0 to set up
	}{
		{"/dev/null", "/dev/null", []string{"-o /dev/null", "character device", "not a regular file"}, false},
		{"char device", filepath.Join(dir, "null"), []string{"character device"}, true},
		{"block device", filepath.Join(dir, "loop"), []string{"block device"}, true},
		{"fifo", fifo, []string{"-o " + fifo, "fifo"}, false},
		{"socket", sock, []string{"-o " + sock, "socket"}, false},
		{"directory", sub, []string{"-o " + sub, "directory"}, false},
		{"symlink", link, []string{"-o " + link, "symlink to " + real, "-o " + real}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				if os.Getuid() != 0 {
					t.Skip("making a device node needs root")
				}
				mode, dev := uint32(unix.S_IFCHR), unix.Mkdev(1, 3) // like /dev/null
				if tc.name == "block device" {
					mode, dev = unix.S_IFBLK, unix.Mkdev(7, 0) // like /dev/loop0
				}
				if err := unix.Mknod(tc.path, mode|0o666, int(dev)); err != nil {
					t.Fatal(err)
				}
			}
			before, err := os.Lstat(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			unblock := func() {
				// Opening the write end lets a blocked read see EOF.
				if f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			}
			code, stdout, stderr := driveWithin(t, 5*time.Second, unblock, menuArgs(boot, "grub", "-o", tc.path)...)
			if code != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want exit 1 and nothing written", code, stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
			after, err := os.Lstat(tc.path)
			if err != nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
				t.Errorf("%s is now %v (%v); want it untouched: %v", tc.path, after, err, before.Mode())
			}
			if _, err := os.Lstat(tc.path + ".bak"); err == nil {
				t.Errorf("%s.bak was made", tc.path)
			}
		})
	}
	if got, _ := os.ReadFile(real); len(got) != 0 {
		t.Errorf("the symlink's target was written:\n%s", got)
	}
}

// dockroot's header anywhere but at the very start does not make a file
// dockroot's: the lines above it are the user's.
func TestMenuOutputHeaderNotFirst(t *testing.T) {
	boot := bootDirWith(t, "desk:stable")
	dir := t.TempDir()
	for _, style := range []string{"cfg", "grub.d"} {
		t.Run(style, func(t *testing.T) {
			ours := filepath.Join(dir, "ours-"+style)
			if code, _, stderr := drive(menuArgs(boot, "grub", "--grub-style", style, "-o", ours)...); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			generated, _ := os.ReadFile(ours)
			custom := filepath.Join(dir, "custom-"+style)
			mine := "# my own entries\nmenuentry 'Windows' {\n\tchainloader /EFI/Microsoft/Boot/bootmgfw.efi\n}\n" + string(generated)
			if err := os.WriteFile(custom, []byte(mine), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := drive(menuArgs(boot, "grub", "--grub-style", style, "-o", custom)...)
			if got, _ := os.ReadFile(custom); code != 1 || string(got) != mine || stdout != "" ||
				!strings.Contains(stderr, "-o "+custom+": the file exists and dockroot menu did not write it") {
				t.Errorf("exit %d, stdout %q, stderr %q, file now:\n%s\nwant exit 1 and the file untouched", code, stdout, stderr, got)
			}
			if _, err := os.Lstat(custom + ".bak"); err == nil {
				t.Errorf("%s.bak was made for a file that is not dockroot's", custom)
			}
		})
	}
}

// A file dockroot wrote and nobody edited since is replaced in place, with
// no backup; it records what dockroot wrote (a checksum of its content),
// so that the next run can tell.
func TestMenuOutputReplacesOwnFile(t *testing.T) {
	boot := bootDirWith(t, "desk:stable", "desk:testing")
	sum := regexp.MustCompile(`(?m)^# sha256 of the lines below: [0-9a-f]{64}$`)
	for _, tc := range []struct {
		loader string
		styles []string // successive --grub-style values, one per run
	}{
		{"grub", []string{"grub.d", "grub.d", "cfg", "grub.d"}},
		{"refind", []string{"", "", ""}},
	} {
		t.Run(tc.loader, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "menu")
			for i, style := range tc.styles {
				args := menuArgs(boot, tc.loader, "--append", fmt.Sprintf("run=%d", i), "-o", out)
				if style != "" {
					args = append(args, "--grub-style", style)
				}
				code, stdout, stderr := drive(args...)
				if code != 0 || strings.Contains(stdout, ".bak") {
					t.Fatalf("run %d: exit %d, stdout %q, stderr %q", i, code, stdout, stderr)
				}
				got, _ := os.ReadFile(out)
				if !strings.Contains(string(got), fmt.Sprintf("run=%d", i)) {
					t.Errorf("run %d did not replace the file:\n%s", i, got)
				}
				if !sum.Match(got) {
					t.Errorf("run %d: the file records no checksum of its content:\n%s", i, got)
				}
			}
			if names := leftoverNames(t, dir); strings.Join(names, " ") != "menu" {
				t.Errorf("directory holds %v, want only the menu", names)
			}
		})
	}
}

// A file that starts with dockroot's header but was edited since is kept
// as FILE.bak before it is replaced, and the output says so; an older
// FILE.bak that differs is never overwritten.
func TestMenuOutputKeepsEditedFileAsBak(t *testing.T) {
	boot := bootDirWith(t, "desk:stable")
	const windows = "\nmenuentry 'Windows' {\n\tchainloader /EFI/Microsoft/Boot/bootmgfw.efi\n}\n"
	for _, tc := range []struct {
		name  string
		style string
		edit  func(generated string) string
	}{
		{"entry appended to the grub.d script", "grub.d", func(g string) string { return g + windows }},
		{"entry appended to custom.cfg", "cfg", func(g string) string { return g + windows }},
		{"parameter changed inside an entry", "cfg", func(g string) string { return strings.Replace(g, "'rw'", "'ro'", 1) }},
		{"line removed", "cfg", func(g string) string {
			return strings.Replace(g, "\tinitrd '/dockroot/desk-stable/initramfs.img'\n", "", 1)
		}},
		{"written by an older dockroot, without checksum", "cfg", func(g string) string {
			var keep []string
			for _, l := range strings.SplitAfter(g, "\n") {
				if !strings.HasPrefix(l, "# sha256 ") {
					keep = append(keep, l)
				}
			}
			return strings.Join(keep, "")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "menu.cfg")
			if code, _, stderr := drive(menuArgs(boot, "grub", "--grub-style", tc.style, "-o", out)...); code != 0 {
				t.Fatalf("first write: exit %d: %s", code, stderr)
			}
			generated, _ := os.ReadFile(out)
			edited := tc.edit(string(generated))
			if edited == string(generated) {
				t.Fatal("the edit changed nothing")
			}
			if err := os.WriteFile(out, []byte(edited), 0o755); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := drive(menuArgs(boot, "grub", "--grub-style", tc.style, "--append", "quiet", "-o", out)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			bak := out + ".bak"
			if got, err := os.ReadFile(bak); err != nil || string(got) != edited {
				t.Errorf("%s = %q, %v; want the edited file kept", bak, got, err)
			}
			// grub-mkconfig runs every executable file in /etc/grub.d.
			if fi, err := os.Stat(bak); err == nil && fi.Mode().Perm()&0o111 != 0 {
				t.Errorf("%s mode %v: want it not executable", bak, fi.Mode())
			}
			if !strings.Contains(stdout, "kept "+out+" as "+bak) {
				t.Errorf("stdout %q does not say the edited file was kept as %s", stdout, bak)
			}
			if got, _ := os.ReadFile(out); !strings.Contains(string(got), "'quiet'") {
				t.Errorf("%s was not replaced:\n%s", out, got)
			}

			// Edited again: the first backup differs and stays; nothing is written.
			again := strings.Replace(string(mustRead(t, out)), "'quiet'", "'splash'", 1)
			if err := os.WriteFile(out, []byte(again), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr = drive(menuArgs(boot, "grub", "--grub-style", tc.style, "-o", out)...)
			if code != 1 || stdout != "" || !strings.Contains(stderr, bak) || string(mustRead(t, bak)) != edited || string(mustRead(t, out)) != again {
				t.Errorf("edited with %s present: exit %d, stdout %q, stderr %q; want exit 1, both files untouched", bak, code, stdout, stderr)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func leftoverNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
