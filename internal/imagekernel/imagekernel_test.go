package imagekernel

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bzImage returns the start of an x86 kernel image whose boot header
// carries version (boot protocol 2.15, version string at 0x300).
func bzImage(version string) []byte {
	b := make([]byte, 0x400)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	binary.LittleEndian.PutUint16(b[0x20E:], 0x300-0x200)
	copy(b[0x300:], version+" (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2\x00")
	return b
}

// tree is a root filesystem for a test: path -> content; "->target" makes
// a symlink, a trailing slash a directory.
type tree map[string]string

func (tr tree) make(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range tr {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(p, "/"):
			err := os.MkdirAll(full, 0o755)
			if err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(c, "->"):
			if err := os.Symlink(strings.TrimPrefix(c, "->"), full); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestHeaderVersion(t *testing.T) {
	good := bzImage("6.1.0-56-amd64")
	badPtr := bzImage("6.1.0-56-amd64")
	binary.LittleEndian.PutUint16(badPtr[0x20E:], 0xff00)
	empty := bzImage("")
	copy(empty[0x300:], "\x00")
	old := bzImage("2.4.0")
	binary.LittleEndian.PutUint16(old[0x206:], 0x0105) // protocol 1.x: no version pointer
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"bzImage", good, "6.1.0-56-amd64"},
		{"not a kernel", []byte(strings.Repeat("x", 0x400)), ""},
		{"too short", good[:0x100], ""},
		{"pointer past the data", badPtr, ""},
		{"old boot protocol", old, ""},
		{"empty version", empty, ""},
	} {
		if got := HeaderVersion(c.data); got != c.want {
			t.Errorf("%s: HeaderVersion = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestScanDebianLayout(t *testing.T) {
	const kver = "6.1.0-56-amd64"
	root := tree{
		"boot/vmlinuz-" + kver: string(bzImage(kver)),
		"boot/vmlinuz":         "->/boot/vmlinuz-" + kver, // absolute: resolved inside the root
		"vmlinuz":              "->boot/vmlinuz-" + kver,
		"vmlinuz.old":          "->boot/vmlinuz-6.1.0-1-amd64", // dangling
		"lib":                  "->usr/lib",
		"usr/lib/modules/" + kver + "/modules.dep": "",
		"usr/lib/modules/6.1.0-9-amd64/":           "", // an empty leftover: not a module tree
	}.make(t)
	s, err := ScanRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Kernels) != 1 {
		t.Fatalf("found %d kernels, want 1 (links to one file count once): %+v", len(s.Kernels), s.Kernels)
	}
	k := s.Kernels[0]
	if k.Version != kver || k.HeaderVersion != kver || k.Rel != "boot/vmlinuz-"+kver || k.Modules != "lib/modules/"+kver {
		t.Errorf("kernel = %+v", k)
	}
	if p := s.Problems(); len(p) != 0 {
		t.Errorf("Problems = %q, want none", p)
	}
	got, err := s.Bootable("")
	if err != nil || got.Version != kver {
		t.Fatalf("Bootable = %+v, %v", got, err)
	}
	mr, err := s.ModulesRoot(got)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "usr"); mr != want {
		t.Errorf("ModulesRoot = %s, want %s (lib -> usr/lib resolved)", mr, want)
	}
}

func TestScanMergedUsrLayout(t *testing.T) {
	// Arch and Fedora: the package's kernel is lib/modules/KVER/vmlinuz;
	// Fedora also copies it to /boot (same version: one kernel).
	root := tree{
		"usr/lib/modules/6.8.1-arch1-1/vmlinuz":     "arch kernel",
		"usr/lib/modules/6.8.1-arch1-1/modules.dep": "",
		"usr/lib/modules/6.9.0-1.fc40/vmlinuz":      "fedora kernel",
		"usr/lib/modules/6.9.0-1.fc40/kernel/":      "",
		"boot/vmlinuz-6.9.0-1.fc40":                 "fedora kernel copy",
		"lib":                                       "->/usr/lib", // absolute
	}.make(t)
	s, err := ScanRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range s.Kernels {
		got = append(got, k.Version+"@"+k.Rel)
	}
	want := []string{"6.9.0-1.fc40@lib/modules/6.9.0-1.fc40/vmlinuz", "6.8.1-arch1-1@lib/modules/6.8.1-arch1-1/vmlinuz"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("kernels = %v, want %v (newest first, the /boot copy counted once)", got, want)
	}
	k, err := s.Bootable("6.8.1-arch1-1")
	if err != nil || k.Version != "6.8.1-arch1-1" {
		t.Fatalf("Bootable(6.8.1-arch1-1) = %+v, %v", k, err)
	}
	mr, err := s.ModulesRoot(k)
	if err != nil || mr != filepath.Join(root, "usr") {
		t.Errorf("ModulesRoot = %s, %v; want %s", mr, err, filepath.Join(root, "usr"))
	}
}

func TestScanMismatches(t *testing.T) {
	root := tree{
		"boot/vmlinuz-6.1.0-57-amd64":            string(bzImage("6.1.0-57-amd64")),
		"boot/vmlinuz-6.1.0-55-amd64":            string(bzImage("6.1.0-56-amd64")), // renamed
		"lib/modules/6.1.0-56-amd64/modules.dep": "",
		"lib/modules/6.1.0-54-amd64/kernel/":     "",
	}.make(t)
	s, err := ScanRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	probs := strings.Join(s.Problems(), "\n")
	for _, want := range []string{
		"boot/vmlinuz-6.1.0-55-amd64 is named for 6.1.0-55-amd64 but its header says 6.1.0-56-amd64",
		"kernel 6.1.0-57-amd64 (boot/vmlinuz-6.1.0-57-amd64) has no lib/modules/6.1.0-57-amd64",
		"lib/modules/6.1.0-54-amd64 has no kernel file",
	} {
		if !strings.Contains(probs, want) {
			t.Errorf("Problems lack %q:\n%s", want, probs)
		}
	}
	// The newest kernel has no modules: the newest one that has them wins.
	k, err := s.Bootable("")
	if err != nil || k.Version != "6.1.0-56-amd64" {
		t.Errorf("Bootable = %+v, %v; want the 6.1.0-56-amd64 kernel", k, err)
	}
	if _, err := s.Bootable("6.1.0-57-amd64"); err == nil || !strings.Contains(err.Error(), "no modules in lib/modules/6.1.0-57-amd64") {
		t.Errorf("Bootable(6.1.0-57-amd64) error = %v, want it to name the missing modules", err)
	}
	if _, err := s.Bootable("7.0"); err == nil || !strings.Contains(err.Error(), "6.1.0-57-amd64, 6.1.0-56-amd64") {
		t.Errorf("Bootable(7.0) error = %v, want it to list the kernels there are", err)
	}
}

func TestScanNoKernel(t *testing.T) {
	for name, tr := range map[string]tree{
		"nothing":      {"etc/hostname": "x"},
		"modules only": {"lib/modules/6.1.0-56-amd64/modules.dep": ""},
	} {
		s, err := ScanRoot(tr.make(t))
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Bootable("")
		if !errors.Is(err, ErrNoKernel) || !strings.Contains(err.Error(), "apt-get install -y linux-image-amd64") {
			t.Errorf("%s: Bootable error = %v, want ErrNoKernel saying to install a kernel package", name, err)
		}
		if len(s.Problems()) != 0 {
			t.Errorf("%s: Problems = %q; no kernel is not a mismatch", name, s.Problems())
		}
	}
}

// A kernel link in the image that climbs out with .. must stay inside the
// image: the file it would reach on the host is never read.
func TestScanStaysInsideRoot(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "vmlinuz-6.6.6")
	if err := os.WriteFile(outside, bzImage("6.6.6"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := tree{
		"boot/vmlinuz-6.6.6":            "->" + strings.Repeat("../", 30) + strings.TrimPrefix(outside, "/"),
		"boot/vmlinuz-6.6.7":            "->" + outside,
		"lib/modules/6.6.6/modules.dep": "",
	}.make(t)
	s, err := ScanRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range s.Kernels {
		t.Errorf("found kernel %+v outside the image root %s", k, root)
	}
}

// A kernel without its modules is still found (and reported); a /boot
// that links out of the image, or is a file, finds nothing.
func TestScanOddLayouts(t *testing.T) {
	hostBoot := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostBoot, "vmlinuz-9.9.9-host"), bzImage("9.9.9-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		tree     tree
		kernels  string // Version@Rel, newest first
		problems int
	}{
		{"kernel without modules", tree{"usr/lib/modules/6.12.1-arch1/vmlinuz": "k"}, "6.12.1-arch1@usr/lib/modules/6.12.1-arch1/vmlinuz", 1},
		{"stray file in lib/modules", tree{"lib/modules/README": "x", "boot/vmlinuz-6.1.0-1-amd64": "k", "lib/modules/6.1.0-1-amd64/modules.dep": ""},
			"6.1.0-1-amd64@boot/vmlinuz-6.1.0-1-amd64", 0},
		{"empty kernel file", tree{"boot/vmlinuz-6.1.0-1-amd64": ""}, "", 0},
		{"boot links to the host", tree{"boot": "->" + hostBoot}, "", 0},
		{"boot is a file", tree{"boot": "x"}, "", 0},
	} {
		s, err := ScanRoot(c.tree.make(t))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var got []string
		for _, k := range s.Kernels {
			got = append(got, k.Version+"@"+k.Rel)
		}
		if strings.Join(got, " ") != c.kernels || len(s.Problems()) != c.problems {
			t.Errorf("%s: kernels %q, problems %q; want %q and %d problems", c.name, got, s.Problems(), c.kernels, c.problems)
		}
	}
}
