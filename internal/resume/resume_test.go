package resume

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/blockdev"
	"github.com/dockroot/dockroot/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestDecide(t *testing.T) {
	notFound := errors.New("no device LABEL=swap among vda, vda1")
	for _, tc := range []struct {
		name       string
		f          Facts
		keep, try  bool
		wantReason string
	}{
		{"nothing configured", Facts{}, false, false, "no resume device"},
		{"kernel reports 0:0", Facts{Kernel: "0:0"}, false, false, "no resume device"},
		{"noresume and no resume=", Facts{NoResume: true, Kernel: "8:2"}, false, false, "noresume: the kernel's resume device 8:2 is not checked"},
		{"resume= with no image", Facts{Resume: "/dev/vda2", Named: "resume=/dev/vda2", Device: "/dev/vda2"}, false, false, "holds no hibernation image"},
		{"resume= with an image", Facts{Resume: "/dev/vda2", Named: "resume=/dev/vda2", Device: "/dev/vda2", Hibernated: true, Signature: "S1SUSPEND"},
			true, true, "holds a hibernation image (S1SUSPEND): resuming it"},
		{"resume= with an image and noresume", Facts{Resume: "/dev/vda2", NoResume: true, Named: "resume=/dev/vda2", Device: "/dev/vda2", Hibernated: true, Signature: "S1SUSPEND"},
			true, false, "noresume is set: not resuming"},
		{"kernel device with an image", Facts{Kernel: "254:2", Named: "the kernel's resume device 254:2", Device: "/dev/vda2", Hibernated: true, Signature: "ULSUSPEND"},
			true, true, "the kernel's resume device 254:2: /dev/vda2 holds a hibernation image (ULSUSPEND)"},
		{"kernel device without an image", Facts{Kernel: "254:2", Named: "the kernel's resume device 254:2", Device: "/dev/vda2"},
			false, false, "holds no hibernation image"},
		{"resume= device missing", Facts{Resume: "LABEL=swap", Named: "resume=LABEL=swap", FindErr: notFound},
			true, false, "Fix resume="},
		{"resume= device unreadable", Facts{Resume: "/dev/vda2", Named: "resume=/dev/vda2", Device: "/dev/vda2", ProbeErr: unix.EIO},
			true, false, "could not be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide(tc.f)
			if v.KeepLayer != tc.keep || v.TryResume != tc.try {
				t.Errorf("Decide = keep %v, resume %v; want keep %v, resume %v (%s)", v.KeepLayer, v.TryResume, tc.keep, tc.try, v.Reason)
			}
			if v.TryResume && !v.KeepLayer {
				t.Errorf("TryResume without KeepLayer: a failed resume would recreate the layer")
			}
			if !strings.Contains(v.Reason, tc.wantReason) {
				t.Errorf("reason %q lacks %q", v.Reason, tc.wantReason)
			}
		})
	}
}

// swapImage makes a real swap area with mkswap and, if sig is set, stamps
// it the way a hibernating kernel does: the signature in the 10 bytes at
// the end of the first page.
func swapImage(t *testing.T, sig string) string {
	t.Helper()
	if _, err := exec.LookPath("mkswap"); err != nil {
		t.Skip("mkswap not found (util-linux)")
	}
	path := filepath.Join(t.TempDir(), "swap.img")
	if err := os.WriteFile(path, make([]byte, 10<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkswap", "-p", "4096", path).CombinedOutput(); err != nil {
		t.Fatalf("mkswap: %v %s", err, out)
	}
	if sig != "" {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		field := make([]byte, 10)
		copy(field, sig)
		if _, err := f.WriteAt(field, 4096-10); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return path
}

func TestProberWithRealSwap(t *testing.T) {
	hib := swapImage(t, "S1SUSPEND")
	plain := swapImage(t, "")
	for _, tc := range []struct {
		name, resume, kernel string
		noresume             bool
		dev                  string // what Find returns for the spec
		keep, try            bool
		wantFind             string // the spec Find must be asked for; "" = not called
	}{
		{"resume= names the hibernated swap", "/dev/swap", "0:0", false, hib, true, true, "/dev/swap"},
		{"resume= names a plain swap", "/dev/swap", "0:0", false, plain, false, false, "/dev/swap"},
		{"kernel names the hibernated swap", "", "8:2\n", false, hib, true, true, "8:2"},
		{"noresume ignores the kernel's device", "", "8:2", true, hib, false, false, ""},
		{"noresume with resume= still keeps the layer", "UUID=x", "8:2", true, hib, true, false, "UUID=x"},
		{"nothing set", "", "0:0", false, hib, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := filepath.Join(t.TempDir(), "resume")
			os.WriteFile(sys, []byte(tc.kernel), 0o644)
			asked := ""
			p := &Prober{
				SysPowerResume: sys,
				Find:           func(s string) (string, error) { asked = s; return tc.dev, nil },
				Signature:      blockdev.HibernationSignatureAt,
			}
			v := p.Check(tc.resume, 0, tc.noresume)
			if v.KeepLayer != tc.keep || v.TryResume != tc.try {
				t.Errorf("Check = %+v; want keep %v, resume %v", v, tc.keep, tc.try)
			}
			if asked != tc.wantFind {
				t.Errorf("Find asked for %q, want %q", asked, tc.wantFind)
			}
		})
	}
	t.Run("device not found keeps the layer", func(t *testing.T) {
		p := &Prober{SysPowerResume: "/nonexistent", Find: func(s string) (string, error) { return "", fmt.Errorf("no device %s", s) },
			Signature: blockdev.HibernationSignatureAt}
		if v := p.Check("LABEL=swap", 0, false); !v.KeepLayer || v.TryResume || !strings.Contains(v.Reason, "no device LABEL=swap") {
			t.Errorf("Check = %+v", v)
		}
	})
	t.Run("unreadable device keeps the layer", func(t *testing.T) {
		p := &Prober{SysPowerResume: "/nonexistent", Find: func(string) (string, error) { return "/nonexistent/swap", nil },
			Signature: blockdev.HibernationSignatureAt}
		if v := p.Check("/dev/x", 0, false); !v.KeepLayer || v.TryResume {
			t.Errorf("Check = %+v", v)
		}
	})
}

// TestProberSwapFileOffset: with a swap file, resume= names the device of
// the filesystem that holds it and resume_offset= (or the kernel's
// /sys/power/resume_offset) the page where its header lies. The image must
// be looked for there, not at the start of the device, or a hibernated
// system's filesystem would get a fresh layer (issue 17 item 9).
func TestProberSwapFileOffset(t *testing.T) {
	const page, at = 4096, 20
	swap, err := os.ReadFile(swapImage(t, "S1SUSPEND"))
	if err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(t.TempDir(), "fs.img")
	img := make([]byte, 64*page)
	copy(img[at*page:], swap[:4*page])
	if err := os.WriteFile(dev, img, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cmdline int64  // resume_offset=
		kernel  string // /sys/power/resume_offset
		keep    bool
	}{
		{"resume_offset= names the swap file's page", at, "0", true},
		{"the kernel's resume_offset when not given", 0, "20\n", true},
		{"offset 0 looks at the start of the device", 0, "0", false},
		{"a wrong offset finds nothing", at + 1, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sysOff := filepath.Join(dir, "resume_offset")
			os.WriteFile(sysOff, []byte(tc.kernel), 0o644)
			p := &Prober{SysPowerResume: filepath.Join(dir, "resume"), SysPowerResumeOffset: sysOff, PageSize: page,
				Find: func(string) (string, error) { return dev, nil }, Signature: blockdev.HibernationSignatureAt}
			v := p.Check("/dev/fs", tc.cmdline, false)
			if v.KeepLayer != tc.keep || v.TryResume != tc.keep {
				t.Fatalf("Check = %+v; want keep and resume %v", v, tc.keep)
			}
			if tc.keep && (v.Offset != at || !strings.Contains(v.Reason, "offset 20")) {
				t.Errorf("Check = %+v; want offset %d named", v, at)
			}
		})
	}
}

// TestResumeWritesDeviceNumber attaches a hibernated swap image to a loop
// device, finds it through a real blockdev scan, and checks that Resume
// writes its major:minor where the kernel reads it (a file standing in for
// /sys/power/resume: writing the real one would resume the test machine).
func TestResumeWritesDeviceNumber(t *testing.T) {
	testenv.RequireRoot(t)
	img := swapImage(t, "S2SUSPEND")
	loop := strings.TrimSpace(testenv.Run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })

	sys := filepath.Join(t.TempDir(), "resume")
	os.WriteFile(sys, []byte("0:0\n"), 0o644)
	sysOff := filepath.Join(t.TempDir(), "resume_offset")
	os.WriteFile(sysOff, []byte("0\n"), 0o644)
	p := NewProber(t.Logf)
	p.SysPowerResume, p.SysPowerResumeOffset = sys, sysOff
	v := p.Check(loop, 0, false)
	if !v.KeepLayer || !v.TryResume || v.Device != loop {
		t.Fatalf("Check(resume=%s) = %+v", loop, v)
	}
	if err := p.Resume(v.Device, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(sysOff); string(got) != "0\n" {
		t.Errorf("offset 0 rewrote resume_offset: %q", got)
	}
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d:%d\n", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	if got, _ := os.ReadFile(sys); string(got) != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	// A swap file: the offset goes first, then the device.
	if err := p.Resume(v.Device, 34816); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(sysOff); string(got) != "34816\n" {
		t.Errorf("resume_offset = %q, want 34816", got)
	}
	if err := p.Resume(img, 0); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("Resume(regular file) = %v", err)
	}
	p.SysPowerResume = filepath.Join(t.TempDir(), "absent")
	if err := p.Resume(loop, 0); err == nil || !strings.Contains(err.Error(), "CONFIG_HIBERNATION") {
		t.Errorf("Resume without /sys/power/resume = %v", err)
	}
}
