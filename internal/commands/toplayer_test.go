package commands

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dockroot/dockroot/internal/bootrecord"
)

func TestToplayerUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"toplayer"}, "toplayer needs a subcommand: capture"},
		{[]string{"toplayer", "--to", "/tmp/x"}, "toplayer needs a subcommand: capture"},
		{[]string{"toplayer", "snapshot", "--to", "/tmp/x"}, `unknown subcommand "snapshot"`},
		{[]string{"toplayer", "capture"}, "--to DIR is required"},
		{[]string{"toplayer", "capture", "--to", "/tmp/x", "extra"}, `unexpected argument "extra"`},
		{[]string{"toplayer", "capture", "--to", "/tmp/x", "--what", "users,homes"}, `--what: unknown category "homes" (there are identity, ssh, network, users, fstab, time)`},
		{[]string{"toplayer", "capture", "--to"}, "flag needs an argument"},
	}
	for _, tt := range tests {
		code, out, errs := runCLI(nil, tt.args...)
		if code != 2 || out != "" || !strings.Contains(errs, tt.want) || !strings.Contains(errs, "Usage:\n  dockroot toplayer capture --to DIR") {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant exit 2 with %q and the usage", tt.args, code, out, errs, tt.want)
		}
	}
	code, out, _ := runCLI(nil, "toplayer", "--help")
	for _, want := range []string{"identity  etc/hostname", "dockroot toplayer capture --to /mnt/top/boot_docker --dry-run", "--what LIST", "Exit codes:"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("toplayer --help (exit %d) lacks %q", code, want)
		}
	}
}

// fields normalises the report's column padding.
func fields(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(out, "\n")
}

func TestToplayerCaptureOutput(t *testing.T) {
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "top")
	for rel, c := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"etc/hostname":                 {"desk1\n", 0o644},
		"etc/hosts":                    {"127.0.0.1 localhost\n", 0o644},
		"etc/ssh/ssh_host_ed25519_key": {"KEY\n", 0o600},
		"etc/passwd":                   {"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n", 0o644},
		"etc/group":                    {"root:x:0:\nsudo:x:27:alice\nalice:x:1000:\n", 0o644},
	} {
		p := filepath.Join(from, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
	}
	uid, gid := os.Getuid(), os.Getgid()
	noRecord := filepath.Join(t.TempDir(), "boot.json")
	args := []string{"toplayer", "capture", "--from", from, "--to", to, "--boot-json", noRecord, "--what", "identity,ssh,users"}

	code, out, stderr := runCLI(nil, append(args, "--dry-run")...)
	if code != 0 || stderr != "" {
		t.Fatalf("--dry-run: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Lstat(to); err == nil {
		t.Errorf("--dry-run made %s", to)
	}
	if !strings.Contains(out, "dry run: nothing written (would write 4 files, 0 of them replaced)") {
		t.Errorf("--dry-run output:\n%s", out)
	}

	code, out, stderr = runCLI(nil, args...)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, stderr, out)
	}
	own := func(mode string) string { return "(" + strconv.Itoa(uid) + ":" + strconv.Itoa(gid) + " " + mode + ")" }
	for _, want := range []string{
		"capture identity, ssh, users from " + from + " into " + to,
		"identity new etc/hostname " + own("0644"),
		"identity absent etc/machine-id: not on this machine",
		"identity left out etc/hosts: it does not name the hostname desk1, so it is the image's own: the image's is kept",
		"ssh new etc/ssh/ssh_host_ed25519_key " + own("0600"),
		"users new etc/passwd " + own("0644"),
		"users left out user root (uid 0): system account (uid below UID_MIN 1000)",
		"users took user alice (uid 1000)",
		"users took group sudo (gid 27): members alice",
		"users took group alice (gid 1000): primary group of alice",
		"users left out 1 system groups (gid outside 1000..60000) with no captured member",
		"users absent etc/shadow: not on this machine",
		"wrote 4 files into " + to + " (4 new, 0 replaced)",
	} {
		if !strings.Contains(fields(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	if err := os.WriteFile(filepath.Join(from, "etc/hostname"), []byte("desk2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, _ = runCLI(nil, args...)
	for _, want := range []string{"identity replaced etc/hostname", "ssh unchanged etc/ssh/ssh_host_ed25519_key", "users unchanged etc/group", "wrote 1 files into " + to + " (0 new, 1 replaced)"} {
		if !strings.Contains(fields(out), want) {
			t.Errorf("second run lacks %q:\n%s", want, out)
		}
	}
}

// TestToplayerCaptureRefusesRwLayer: with a boot record, a --to on the
// same filesystem as / is refused with what to give instead. The CLI's
// host root is the real /, so this needs a temporary directory on it.
func TestToplayerCaptureRefusesRwLayer(t *testing.T) {
	dir := t.TempDir()
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat("/", &b) != nil || a.Dev != b.Dev {
		t.Skipf("%s is not on the root filesystem's device; TestCaptureRefusesBootedRwLayer covers the decision", dir)
	}
	bootJSON := filepath.Join(dir, "boot.json")
	if err := bootrecord.Write(bootJSON, &bootrecord.Record{Schema: bootrecord.Schema, Layer: bootrecord.Layer{Subvolume: "docker_rwlayer"},
		RootDevice: "/dev/vda (LABEL=linux)", RootDevicePath: "/dev/vda", Toplayer: &bootrecord.Toplayer{Device: "/dev/vda (LABEL=linux)", Path: "boot_docker"}}); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(dir, "top")
	code, out, stderr := runCLI(nil, "toplayer", "capture", "--from", dir, "--to", to, "--boot-json", bootJSON)
	want := "dockroot toplayer: " + to + " is on the rw layer docker_rwlayer that this system booted as /, which the next boot replaces with a fresh snapshot of the image: a top layer written there is lost; " +
		"give --to a directory on the btrfs top level mounted elsewhere (mount -o subvolid=5 /dev/vda /mnt/top; --to /mnt/top/boot_docker, this boot's toplayer_path=) or on another disk"
	if code != 1 || out != "" || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 with %q", code, out, stderr, want)
	}
	if _, err := os.Lstat(to); err == nil {
		t.Errorf("a refused capture made %s", to)
	}
}
