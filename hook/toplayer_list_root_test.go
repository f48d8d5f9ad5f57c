package hook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/machineid"
	"golang.org/x/sys/unix"
)

// TestBootToplayerListRealBtrfs boots the real sequence (see realBoot)
// with toplayer_path=fleet/common,fleet/machines/%u and a fake DMI product
// UUID: the machine's directory wins over the common one, the second boot
// reuses the prepared base of both, and once the machine's directory is
// gone the common one alone is applied, into a new base.
func TestBootToplayerListRealBtrfs(t *testing.T) {
	r := newRealBoot(t)
	sys := t.TempDir()
	mustDo(t, os.MkdirAll(filepath.Join(sys, "dmi"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(sys, "dmi/product_uuid"), []byte(strings.ToUpper(fakeUUID)+"\n"), 0o400))
	r.machine = &machineid.Sources{DMI: filepath.Join(sys, "dmi"), Net: filepath.Join(sys, "net")}
	machineDir := "fleet/machines/" + fakeUUID
	tree(t, r.fs.Mnt, "fleet/common/etc/motd", machineDir+"/etc/")
	mustDo(t, os.WriteFile(filepath.Join(r.fs.Mnt, "fleet/common/etc/hostname"), []byte("common\n"), 0o644))
	mustDo(t, os.WriteFile(filepath.Join(r.fs.Mnt, machineDir, "etc/hostname"), []byte("machine-1\n"), 0o644))
	r.cmdline = strings.Replace(r.cmdline, "toplayer_path=machine", "toplayer_path=fleet/common,fleet/machines/%u", 1)

	r.wantHostname = "machine-1\n"
	log1, paths1 := r.boot(1)
	newRoot := strings.Split(paths1, "|")[0]
	if _, err := os.Stat(filepath.Join(newRoot, "etc/motd")); err != nil {
		t.Errorf("boot 1: the common directory's etc/motd is missing: %v\n%s", err, log1)
	}
	rec1 := r.record(paths1).Toplayer
	if rec1 == nil || rec1.Path != "fleet/common,"+machineDir || rec1.Reused || rec1.Base == "" || rec1.Summary.Files != 3 {
		t.Errorf("boot 1: boot.json top layer %+v, want both directories copied (3 files) and a base kept\n%s", rec1, log1)
	}
	mustDo(t, unix.Unmount(newRoot, 0))

	log2, paths2 := r.boot(2)
	if rec := r.record(paths2).Toplayer; rec == nil || !rec.Reused || rec.Base != rec1.Base {
		t.Errorf("boot 2: boot.json top layer %+v, want the base %s reused\n%s", rec, rec1.Base, log2)
	}
	mustDo(t, unix.Unmount(strings.Split(paths2, "|")[0], 0))

	mustDo(t, os.RemoveAll(filepath.Join(r.fs.Mnt, "fleet/machines")))
	r.wantHostname = "common\n"
	log3, paths3 := r.boot(3)
	rec3 := r.record(paths3).Toplayer
	if rec3 == nil || rec3.Path != "fleet/common" || rec3.Reused || rec3.Base == rec1.Base {
		t.Errorf("boot 3: boot.json top layer %+v, want fleet/common alone copied into a new base\n%s", rec3, log3)
	}
	if log3.find("top layer: skipped", machineDir, "does not exist", "%u="+fakeUUID) == "" {
		t.Errorf("boot 3: no log line names the skipped directory and the machine:\n%s", log3)
	}
	mustDo(t, unix.Unmount(strings.Split(paths3, "|")[0], 0))
}
