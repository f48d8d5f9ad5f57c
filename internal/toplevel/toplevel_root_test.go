package toplevel

import (
	"os"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/testenv"
)

// TestWithRoot mounts a real loop btrfs's top level: fn sees it, the
// system's namespace does not, and nothing is left behind.
func TestWithRoot(t *testing.T) {
	testenv.RequireRoot(t, "mkfs.btrfs", "losetup")
	b := testenv.NewBtrfs(t, 256, "")
	st, _ := bootstate.Load(b.Mnt)
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}

	// While mounted, the top level is visible to the mounting thread
	// only, not in the system's namespace (PID 1's).
	err := With(b.Loop, nil, func(top string) error {
		own, err := os.ReadFile("/proc/thread-self/mountinfo")
		if err != nil {
			return err
		}
		sys, err := os.ReadFile("/proc/1/mountinfo")
		if err != nil {
			return err
		}
		if !strings.Contains(string(own), " "+top+" ") {
			t.Errorf("%s is not mounted in the private namespace", top)
		}
		if strings.Contains(string(sys), " "+top+" ") {
			t.Errorf("%s is visible in the system's mount namespace", top)
		}
		if _, err := os.Stat(bootstate.Path(top)); err != nil {
			t.Errorf("the state file is not on the mounted top level: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	testenv.AssertNoTopLevelMount(t)

	// A device that is not btrfs: the error names it and the mount.
	err = With("/dev/null", nil, func(string) error { t.Error("fn ran without a mount"); return nil })
	if err == nil || !strings.Contains(err.Error(), "mount /dev/null on ") || !strings.Contains(err.Error(), "subvolid=5") {
		t.Errorf("With(/dev/null): %v", err)
	}
	testenv.AssertNoTopLevelMount(t)
}
