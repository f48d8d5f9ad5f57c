package commands

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
)

// doctorLine finds the report line of check name ("storage driver", "init
// of kdesk:1", ...) and returns its status.
func doctorLine(out, name string) string {
	m := regexp.MustCompile(`(?m)^(ok|warn|FAIL)\s+` + regexp.QuoteMeta(name) + `: `).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestDoctorRootBtrfs(t *testing.T) {
	s := newKernelStore(t)
	top := t.TempDir()
	if err := os.MkdirAll(filepath.Join(top, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "etc/shadow"), []byte("root:*:19000:0:99999:7:::\n"), 0o640); err != nil {
		t.Fatal(err)
	}

	// A good image: every check passes.
	code, out, stderr := runCLI(nil, "doctor", "--docker-root", s.Root, "--image", kernelRef, "--toplayer", top, "--daemon-json", "-", "--storage-conf", "-")
	t.Logf("doctor --image %s:\n%s", kernelRef, out)
	if code != 0 || !strings.Contains(out, "9 ok, 0 warnings, 0 failed") {
		t.Errorf("doctor on a good image: exit %d, want 0 and every check ok\n%s%s", code, out, stderr)
	}
	for _, name := range []string{"storage driver", "data root on btrfs", "free space", "init of " + kernelRef, "kernel of " + kernelRef,
		"fstab of " + kernelRef, "fstab of top layer", "top layer etc/shadow", "top layer etc/gshadow"} {
		if st := doctorLine(out, name); st != "ok" {
			t.Errorf("check %q: %q, want ok", name, st)
		}
	}

	// Every tag: images without a kernel are a warning, not a failure.
	code, out, stderr = runCLI(nil, "doctor", "--docker-root", s.Root, "--daemon-json", "-", "--storage-conf", "-")
	if code != 0 || doctorLine(out, "kernel of "+s.Fixtures.Desk1) != "warn" || doctorLine(out, "kernel of "+kernelRef) != "ok" {
		t.Errorf("doctor on every tag: exit %d, want 0, a kernel warning for %s and ok for %s\n%s%s", code, s.Fixtures.Desk1, kernelRef, out, stderr)
	}

	// A world-readable shadow and an fstab that remounts / elsewhere fail.
	if err := os.Chmod(filepath.Join(top, "etc/shadow"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "etc/fstab"), []byte("LABEL=linux / btrfs defaults,subvol=@ 0 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCLI(nil, "doctor", "--docker-root", s.Root, "--image", kernelRef, "--toplayer", top, "--daemon-json", "-", "--storage-conf", "-")
	if code != 1 || doctorLine(out, "top layer etc/shadow") != "FAIL" || doctorLine(out, "fstab of top layer") != "FAIL" ||
		!strings.Contains(out, "subvol=@") || !strings.Contains(stderr, "2 of 9 checks failed") {
		t.Errorf("doctor with a bad top layer: exit %d, want 1 with the shadow and fstab checks failed\n%s%s", code, out, stderr)
	}
}

func TestDoctorRootOverlay2(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker")
	root := filepath.Join(t.TempDir(), "docker")
	d := testenv.StartDockerdDriver(t, root, "overlay2")
	if out, err := d.Run(nil, "info", "--format", "{{.Driver}}"); err != nil || strings.TrimSpace(out) != "overlay2" {
		t.Skipf("dockerd did not start with overlay2 here (%q, %v)", out, err)
	}
	code, out, stderr := runCLI(nil, "doctor", "--docker-root", root, "--daemon-json", "-", "--storage-conf", "-")
	t.Logf("doctor on overlay2:\n%s", out)
	if code != 1 || doctorLine(out, "storage driver") != "FAIL" || doctorLine(out, "data root on btrfs") != "FAIL" {
		t.Errorf("doctor on an overlay2 store: exit %d, want 1 with the storage driver and btrfs checks failed\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"uses the overlay2 storage driver", `{"storage-driver": "btrfs"}`, "pull or build the images again"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q", want)
		}
	}
}

// TestDoctorPodmanRoot: doctor checks a Podman store's driver, filesystem
// and images.
func TestDoctorPodmanRoot(t *testing.T) {
	s := newPodmanStore(t)
	code, out, stderr := runCLI(nil, "doctor", "--docker-root", s.DockerRoot, "--podman-root", s.Root, "--daemon-json", "-", "--storage-conf", "-")
	t.Logf("doctor:\n%s%s", out, stderr)
	for name, want := range map[string]string{"Podman storage driver": "ok", "Podman graph root on btrfs": "ok"} {
		if st := doctorLine(out, name); st != want {
			t.Errorf("check %q: %q, want %q", name, st, want)
		}
	}
	// The fixtures have an init and no kernel.
	for _, re := range []string{`(?m)^ok\s+init of localhost/desk:2: `, `(?m)^warn\s+kernel of localhost/desk:2: `} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line %s", re)
		}
	}
	if doctorLine(out, "storage driver") != "" {
		t.Errorf("doctor checked Docker's storage driver, but there is no Docker data root")
	}
	if code != 0 {
		t.Errorf("doctor: exit %d, want 0: %s", code, stderr)
	}

	// The same as JSON, each check naming Podman's store.
	code, out, stderr = runCLI(nil, "doctor", "--docker-root", s.DockerRoot, "--podman-root", s.Root, "--daemon-json", "-", "--storage-conf", "-", "--json")
	var rep doctorReport
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Failed != 0 || len(rep.Checks) == 0 {
		t.Fatalf("doctor --json: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	for _, c := range rep.Checks {
		if c.Store != layout.StorePodman {
			t.Errorf("doctor --json: check %q has store %q, want %s", c.Name, c.Store, layout.StorePodman)
		}
	}
}
