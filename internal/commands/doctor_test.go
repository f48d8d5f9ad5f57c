package commands

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/dockroot/dockroot/internal/doctor"
	"github.com/dockroot/dockroot/internal/layout"
)

// doctor --json gives every check with its store, and the counts; the
// exit code still says whether one failed.
func TestDoctorJSON(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "docker")
	daemonJSON := filepath.Join(dir, "daemon.json")
	if err := os.MkdirAll(filepath.Join(root, "image", "overlay2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(daemonJSON, []byte(`{"storage-driver": "overlay2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := drive("doctor", "--docker-root", root, "--daemon-json", daemonJSON, "--storage-conf", "-",
		"--podman-root", filepath.Join(dir, "no-podman"), "--containerd-root", filepath.Join(dir, "no-containerd"), "--json")
	var rep doctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s%s", err, out, stderr)
	}
	if code != 1 || rep.Failed == 0 || rep.Failed != doctor.Count(rep.Checks, doctor.Fail) {
		t.Errorf("doctor --json on an overlay2 store: exit %d, %d failed of %+v", code, rep.Failed, rep.Checks)
	}
	found := map[string]doctor.Check{}
	for _, c := range rep.Checks {
		found[c.Name] = c
	}
	for name, want := range map[string]doctor.Status{"Docker configuration": doctor.Warn, "storage driver": doctor.Fail} {
		if c, ok := found[name]; !ok || c.Status != want || c.Store != layout.StoreGraphDriver || c.Fix == "" {
			t.Errorf("check %q = %+v; want %s for the graphdriver store, with a fix", name, c, want)
		}
	}
}
